"""The one small model protocol every LLM provider implements.

Reliability (retry, fallback, cache, budget, tracing) will be thin wrappers over this same
protocol, so a provider only knows how to speak its wire format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field

from ragline.models import Usage


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None


class StreamChunk(BaseModel):
    """One streamed piece: a text delta, or (last) the final usage/finish reason."""

    delta: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class ProviderError(RuntimeError):
    """A provider call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, provider: str, status: int | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status


class LLMProvider(ABC):
    name: str
    model: str

    @abstractmethod
    def complete(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Completion:
        """One chat completion."""

    @abstractmethod
    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Iterator[StreamChunk]:
        """The same completion as a stream of text deltas; the last chunk carries usage."""

    def close(self) -> None:
        """Release connections or model memory."""
