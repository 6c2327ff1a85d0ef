"""A "chat {model}" OpenTelemetry span around every model call (GenAI semantic conventions).

Placed outermost, so a cache hit is a span too (`ragline.cache.hit = true`) and the attempts
the chain made show as events. Streams open their span on first iteration and end it when
the stream ends: exhausted, closed early, or failed. Prompt and completion text are recorded
only with `capture_content=True`; secrets are masked later, by the exporters.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ragline.llm.base import (
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)
from ragline.llm.streams import StreamRecorder
from ragline.llm.wrappers.base import WrapperProvider
from ragline.models import Attempt

# Makes the span current without ending it or touching its status: `_span` does both.
_active = partial(trace.use_span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def _attempt_event(attempt: Attempt) -> dict:
    fields = attempt.model_dump()
    return {f"ragline.attempt.{k}": v for k, v in fields.items() if v is not None}


class TracedProvider(WrapperProvider):
    def __init__(self, wrapped: LLMProvider, *, tracer: trace.Tracer | None = None, capture_content: bool = False):
        super().__init__(wrapped)
        self.tracer = tracer or trace.get_tracer("ragline")
        self.capture_content = capture_content

    @contextmanager
    def _span(self, request: ChatRequest, *, streaming: bool) -> Iterator[Span]:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self.name,
            "gen_ai.provider.name": self.name,
            "gen_ai.request.model": self.model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "gen_ai.request.temperature": request.temperature,
            "ragline.stream": streaming,
        }
        if request.prompt_version:
            attributes["ragline.prompt.version"] = request.prompt_version
        span = self.tracer.start_span(f"chat {self.model}", kind=SpanKind.CLIENT, attributes=attributes)
        if self.capture_content:
            messages = [m.model_dump() for m in request.messages]
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(messages)})
        try:
            yield span
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                _record_error(span, exc)
            raise
        finally:
            span.end()

    def _finish(self, span: Span, result: Completion | StreamChunk, text: str) -> None:
        """Response attributes from a completion or a stream's final chunk (same fields)."""
        # A bare provider's final stream chunk names no model or provider: then it was this one.
        span.set_attribute("gen_ai.response.model", result.model or self.model)
        span.set_attribute("ragline.provider", result.provider or self.name)
        if result.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
        if result.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
        span.set_attribute("ragline.cache.hit", result.cached)
        span.set_attribute("ragline.cost_usd", result.cost_usd or 0.0)
        _record_attempts(span, result.attempts)
        if self.capture_content:
            span.add_event("gen_ai.content.completion", {"gen_ai.completion": text})

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        with self._span(request, streaming=False) as span, _active(span):
            completion = self.wrapped.complete(request, timeout=timeout)
            self._finish(span, completion, completion.text)
            return completion

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        with self._span(request, streaming=False) as span, _active(span):
            completion = await self.wrapped.acomplete(request, timeout=timeout)
            self._finish(span, completion, completion.text)
            return completion

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        with self._span(request, streaming=True) as span:
            watch = _StreamWatch(span)
            with _active(span):  # the wrapped call's own spans nest under this one
                chunks = self.wrapped.stream(request, timeout=timeout)
            try:
                while (chunk := _step(span, chunks)) is not None:
                    watch.saw(chunk)
                    yield chunk
                watch.ended = True
            finally:
                getattr(chunks, "close", lambda: None)()
                watch.done(self)

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        with self._span(request, streaming=True) as span:
            watch = _StreamWatch(span)
            with _active(span):
                chunks = aiter(self.wrapped.astream(request, timeout=timeout))
            try:
                while (chunk := await _astep(span, chunks)) is not None:
                    watch.saw(chunk)
                    yield chunk
                watch.ended = True
            finally:
                if aclose := getattr(chunks, "aclose", None):
                    await aclose()
                watch.done(self)


def _step(span: Span, chunks: Iterator[StreamChunk]) -> StreamChunk | None:
    """The next chunk, pulled with the span current (never held across a yield: between
    chunks the context belongs to the consumer)."""
    with _active(span):
        return next(chunks, None)


async def _astep(span: Span, chunks: AsyncIterator[StreamChunk]) -> StreamChunk | None:
    with _active(span):
        return await anext(chunks, None)


class _StreamWatch:
    """What a stream delivered so far (the shared collector), its first-token time, whether it ended."""

    def __init__(self, span: Span):
        self.span = span
        self.started = time.perf_counter()
        self.received = StreamRecorder()
        self.ended = False

    def saw(self, chunk: StreamChunk) -> None:
        if chunk.delta and not self.received.pieces:
            self.span.set_attribute("ragline.stream.first_token_ms", (time.perf_counter() - self.started) * 1000)
        self.received.take(chunk)

    def done(self, traced: TracedProvider) -> None:
        self.span.set_attribute("ragline.stream.complete", self.ended)
        if self.ended:
            traced._finish(self.span, self.received.final, self.received.text)
        else:  # closed early or failed: say how far it got
            self.span.set_attribute("ragline.stream.chars", len(self.received.text))


def _record_attempts(span: Span, attempts: list[Attempt]) -> None:
    span.set_attribute("ragline.attempts", len(attempts))
    for attempt in attempts:
        span.add_event("ragline.attempt", _attempt_event(attempt))


def _record_error(span: Span, exc: BaseException) -> None:
    kind = exc.kind if isinstance(exc, ProviderError) else type(exc).__qualname__
    span.set_attribute("error.type", kind)
    if isinstance(exc, ProviderError) and exc.status is not None:
        span.set_attribute("ragline.error.status", exc.status)
    if attempts := getattr(exc, "attempts", None):  # ChainFailed: what each try did
        _record_attempts(span, attempts)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
