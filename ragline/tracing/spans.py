"""Keeping one trace whole across threads, and the retrieval attributes every step shares.

OpenTelemetry keeps the current span in a contextvar. asyncio tasks and `asyncio.to_thread`
copy it; a bare `ThreadPoolExecutor.submit` or `loop.run_in_executor` does not, and a span
started there becomes the root of a new trace. `in_context` and `ContextThreadPoolExecutor`
carry the caller's context into the worker.
"""

from __future__ import annotations

import contextvars
import functools
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from opentelemetry import trace

from ragline.access.principals import READERS_FIELD
from ragline.models import Citation, Hit

P = ParamSpec("P")
R = TypeVar("R")


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to the caller's current context: each call runs in its own copy of it, so
    the same wrapped function may run in several workers at once."""
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in the context of whoever submitted them."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return super().submit(in_context(fn), *args, **kwargs)


def current_trace_id() -> str | None:
    """The hex id of the trace being recorded here, or None outside any (or unsampled) span."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def record_hits(span: trace.Span, hits: Sequence[Hit], *, prefix: str = "ragline.retrieval") -> None:
    """Which chunks a retrieve or rerank step returned, as parallel attribute arrays."""
    span.set_attribute(f"{prefix}.count", len(hits))
    record_chunks(span, hits, prefix=prefix)
    span.set_attribute(f"{prefix}.scores", [float(h.score) for h in hits])


def record_chunks(span: trace.Span, chunks: Sequence[Hit | Citation], *, prefix: str) -> None:
    """Chunk and document ids, and each chunk's readers (JSON; "null" for an unknown ACL):
    `ragline traces` shows a trace only to callers who may read every chunk in it."""
    span.set_attribute(f"{prefix}.document_ids", [c.document_id for c in chunks])
    span.set_attribute(f"{prefix}.chunk_ids", [c.chunk_id for c in chunks])
    span.set_attribute(f"{prefix}.readers", [json.dumps(c.metadata.get(READERS_FIELD)) for c in chunks])
