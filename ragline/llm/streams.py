"""Streams and completions as one another: the one collector that turns a stream into the
Completion it amounts to, and a stored completion streamed back."""

from __future__ import annotations

from collections.abc import Iterator

from ragline.llm.base import Completion, StreamChunk
from ragline.models import Usage


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

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def completion(self, model: str) -> Completion:
        """The whole answer, with the final chunk's usage and the wrappers' record (cost,
        cache flag, attempts); `model` names it when the final chunk does not."""
        final = self.final
        return Completion(
            text=self.text, model=final.model or model, usage=final.usage or Usage(),
            finish_reason=final.finish_reason, provider=final.provider, cost_usd=final.cost_usd or 0.0,
            cached=final.cached, attempts=final.attempts,
        )  # fmt: skip
