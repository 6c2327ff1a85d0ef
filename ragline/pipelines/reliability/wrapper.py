"""The base of single-concern wrappers: an `LLMProvider` that forwards to another one, and
the stream helpers of the wrappers that store completions (cache, record/replay)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from ragline.models import Usage
from ragline.pipelines.providers.base import (
    ChatRequest,
    Completion,
    LLMProvider,
    StreamChunk,
)


def identity(provider: LLMProvider) -> str:
    """What a provider stack answers as, for cache keys: names and models, no credentials."""
    return getattr(provider, "identity", None) or f"{provider.name}/{provider.model}"


class WrapperProvider(LLMProvider):
    """Forwards everything; a wrapper overrides only the calls its concern touches."""

    def __init__(self, wrapped: LLMProvider):
        self.wrapped = wrapped

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.wrapped.name

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.wrapped.model

    @property
    def identity(self) -> str:
        return identity(self.wrapped)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self.wrapped.context_window

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return self.wrapped.complete(request, timeout=timeout)

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        return self.wrapped.stream(request, timeout=timeout)

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return await self.wrapped.acomplete(request, timeout=timeout)

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        async for chunk in self.wrapped.astream(request, timeout=timeout):
            yield chunk

    def count_prompt_tokens(self, request: ChatRequest) -> int | None:
        return self.wrapped.count_prompt_tokens(request)

    def close(self) -> None:
        self.wrapped.close()

    async def aclose(self) -> None:
        await self.wrapped.aclose()


def completion_as_stream(hit: Completion) -> Iterator[StreamChunk]:
    """A stored completion streamed back: its text, then a free, `cached` final chunk."""
    if hit.text:
        yield StreamChunk(delta=hit.text)
    yield StreamChunk(
        usage=hit.usage, finish_reason=hit.finish_reason, model=hit.model, provider=hit.provider,
        cost_usd=0.0, cached=True,
    )  # fmt: skip


class StreamRecorder:
    """Collects a stream into the Completion it amounts to."""

    def __init__(self):
        self.pieces: list[str] = []
        self.final = StreamChunk()

    def take(self, chunk: StreamChunk) -> StreamChunk:
        if chunk.delta:
            self.pieces.append(chunk.delta)
        else:
            self.final = chunk
        return chunk

    def completion(self, model: str) -> Completion:
        final = self.final
        return Completion(
            text="".join(self.pieces), model=final.model or model, usage=final.usage or Usage(),
            finish_reason=final.finish_reason, provider=final.provider,
        )  # fmt: skip
