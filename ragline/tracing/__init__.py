"""Tracing: OpenTelemetry spans for queries (GenAI semantic conventions), kept in SQLite in
the store directory and/or sent over OTLP/HTTP, and read back as trees and HTML waterfalls."""

from ragline.pipelines.reliability.tracing import TracedProvider
from ragline.tracing.redact import RedactingExporter
from ragline.tracing.setup import Tracing, TracingConfig, setup_tracing
from ragline.tracing.spans import (
    ContextThreadPoolExecutor,
    current_trace_id,
    in_context,
    record_hits,
)
from ragline.tracing.store import (
    SpanNode,
    SqliteSpanExporter,
    Trace,
    TraceNotFound,
    TraceStore,
    TraceSummary,
)

__all__ = [
    "ContextThreadPoolExecutor",
    "RedactingExporter",
    "SpanNode",
    "SqliteSpanExporter",
    "Trace",
    "TraceNotFound",
    "TraceStore",
    "TraceSummary",
    "TracedProvider",
    "Tracing",
    "TracingConfig",
    "current_trace_id",
    "in_context",
    "record_hits",
    "setup_tracing",
]
