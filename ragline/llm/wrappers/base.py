"""The base of single-concern wrappers: an `LLMProvider` that forwards to another one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from ragline.llm.base import (
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
