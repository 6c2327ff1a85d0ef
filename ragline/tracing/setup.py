"""The `[tracing]` settings and the tracer provider they build.

Each `Tracing` owns its own `TracerProvider` instead of the process-global one, so two
stores opened in one process keep separate trace files and a host application's global
OpenTelemetry set-up is left alone. Parenting still works across them: the current span
lives in the shared OpenTelemetry context, not in a provider.

The SQLite store is written synchronously when a span ends (a local insert of a few rows):
once `rag.query` returns, its trace is readable by `ragline traces show`. OTLP goes
through a batch processor, off the request path.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from ragline.llm.base import LLMProvider
from ragline.llm.wrappers.tracing import TracedProvider
from ragline.tracing.config import TRACES_FILE, TracingConfig
from ragline.tracing.redact import RedactingExporter
from ragline.tracing.store import SqliteSpanExporter

log = logging.getLogger(__name__)


def otlp_traces_url(endpoint: str) -> str:
    """A base URL gets the standard traces path; a URL with a path is used as given."""
    return endpoint.rstrip("/") + "/v1/traces" if urlsplit(endpoint).path in ("", "/") else endpoint


def otlp_header_secrets(config: TracingConfig) -> dict[str, str]:
    """The `otlp_headers_env` headers with their values read from the environment."""
    missing = [f"{header} (from ${var})" for header, var in config.otlp_headers_env.items() if not os.environ.get(var)]
    if missing:
        raise ValueError(
            f"tracing.otlp_headers_env: no value for {', '.join(missing)}; set the environment variable "
            "or remove the header from the config"
        )
    return {header: os.environ[var] for header, var in config.otlp_headers_env.items()}


def _otlp_exporter(config: TracingConfig, secret_headers: Mapping[str, str]) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=otlp_traces_url(config.otlp_endpoint or ""),
        headers={**config.otlp_headers, **secret_headers},
        timeout=config.otlp_timeout,
    )


class Tracing:
    """The tracer of one store, and the spans ragline opens with it."""

    def __init__(self, tracer: trace.Tracer, provider: TracerProvider | None, *, capture_content: bool = False):
        self.tracer = tracer
        self.provider = provider
        self.capture_content = capture_content

    @contextmanager
    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, content: Mapping[str, Any] | None = None
    ) -> Iterator[trace.Span]:
        """A span around one step, current while it runs; an exception marks it ERROR.
        `content` (question text, rewritten queries) is recorded only with capture_content."""
        merged = dict(attributes or {})
        if self.capture_content and content:
            merged.update(content)
        with self.tracer.start_as_current_span(name, attributes=merged) as span:
            yield span

    def wrap(self, provider: LLMProvider) -> TracedProvider:
        """`provider` with a chat span per call; wrap the outermost layer (cache included)."""
        return TracedProvider(provider, tracer=self.tracer, capture_content=self.capture_content)

    def force_flush(self) -> None:
        if self.provider is not None:
            self.provider.force_flush()

    def shutdown(self) -> None:
        """Flush and close every exporter; call once, when the store closes."""
        if self.provider is not None:
            self.provider.shutdown()


def setup_tracing(
    config: TracingConfig | None = None, store_dir: Path | None = None, *, exporters: Sequence[SpanExporter] = ()
) -> Tracing:
    """Build tracing for a store: SQLite in `store_dir` and/or OTLP per `config`, plus any
    extra `exporters` (all see redacted spans only). Disabled: a no-op tracer, same API."""
    config = config or TracingConfig()
    if not config.enabled:
        return Tracing(trace.NoOpTracer(), None)
    secret_headers = otlp_header_secrets(config) if config.otlp_endpoint else {}
    secrets = list(secret_headers.values())  # masked even when their variables' names look harmless
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    if config.store and store_dir is not None:
        path = Path(store_dir) / TRACES_FILE
        try:
            store = SqliteSpanExporter(path, config.retention_days)
        except (sqlite3.Error, OSError) as exc:  # traces are a diagnosis aid: never block a query
            log.warning("traces are not recorded in %s (%s); move the file away to start a new trace store", path, exc)
        else:
            provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(store, secrets)))
    if config.otlp_endpoint:
        exporter = _otlp_exporter(config, secret_headers)
        provider.add_span_processor(BatchSpanProcessor(RedactingExporter(exporter, secrets)))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter, secrets)))
    return Tracing(provider.get_tracer("ragline"), provider, capture_content=config.capture_content)
