"""Record every model call of a run into a cassette, and replay the run from it offline.

A cassette is a JSON Lines file, one `Recording` per call in the order the calls finished: the
request key (`ChatRequest.key` over the stack's `identity`, so never a credential), the rendered
request, the call kind and its outcome, a `Completion`, the exact streamed chunks, or the
`ProviderError` it raised (with the chunks a stream delivered before it), so a replay fails
where the recorded run failed. A call the caller abandoned (a stream closed early, a
cancellation) is not recorded. Each call is appended and fsynced as it finishes: a crashed run
keeps every call it completed, and there is nothing to save on close.

Replay answers each request by key, identical requests in recorded order, and raises
`CassetteMiss` when none is left. A request recorded as a stream can be replayed by `complete`
(its chunks assembled) and a completed one by `stream` (one delta, then the final chunk).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from ragline.llm.base import (
    ChatRequest,
    Completion,
    ErrorKind,
    LLMProvider,
    ProviderError,
    StreamChunk,
    StreamInterrupted,
)
from ragline.llm.streams import StreamRecorder, completion_as_stream
from ragline.llm.wrappers.base import WrapperProvider

_PREVIEW_CHARS = 60


class RecordedError(BaseModel):
    """A `ProviderError` as data (a `ChainFailed` comes back as a plain `ProviderError`)."""

    interrupted: bool = False
    kind: ErrorKind
    status: int | None = None
    message: str
    provider: str
    retry_after: float | None = None
    partial_text: str = ""

    @classmethod
    def of(cls, error: ProviderError) -> RecordedError:
        return cls(
            interrupted=isinstance(error, StreamInterrupted), kind=error.kind, status=error.status,
            message=str(error), provider=error.provider, retry_after=error.retry_after,
            partial_text=error.partial_text,
        )  # fmt: skip

    def exception(self) -> ProviderError:
        kind = StreamInterrupted if self.interrupted else ProviderError
        return kind(
            self.message, provider=self.provider, status=self.status, kind=self.kind,
            retry_after=self.retry_after, partial_text=self.partial_text,
        )  # fmt: skip


class Recording(BaseModel):
    """One model call: `completion` for a successful complete, `chunks` for any stream."""

    key: str
    identity: str
    model: str
    call: Literal["complete", "stream"]
    request: ChatRequest
    completion: Completion | None = None
    chunks: list[StreamChunk] | None = None
    error: RecordedError | None = None

    def as_completion(self) -> Completion:
        if self.error is not None:
            raise self.error.exception()
        if self.completion is not None:
            return self.completion.model_copy(deep=True)
        recorder = StreamRecorder()
        for chunk in self.chunks or []:
            recorder.take(chunk.model_copy(deep=True))
        return recorder.completion(self.model)

    def as_chunks(self) -> Iterator[StreamChunk]:
        if self.chunks is not None:
            yield from (chunk.model_copy(deep=True) for chunk in self.chunks)
        elif self.completion is not None:
            done = self.completion
            *deltas, final = completion_as_stream(done)
            yield from deltas
            yield final.model_copy(update={"cost_usd": done.cost_usd, "cached": done.cached, "attempts": done.attempts})
        if self.error is not None:
            raise self.error.exception()


class CassetteMiss(ProviderError):
    """The replayed run asked something the recorded run did not (or asked it more often).
    Its kind is `bad_request`, which a model chain neither retries nor falls back on."""

    def __init__(self, message: str):
        super().__init__(message, provider="replay", kind="bad_request")


class Cassette:
    """The recordings of one run, in memory and in a JSON Lines file; `take` hands out each
    key's recordings in order, once each, safely from many threads and tasks."""

    def __init__(self, path: str | Path, recordings: list[Recording] | None = None):
        self.path = Path(path)
        self.recordings: list[Recording] = []
        self._by_key: dict[str, list[Recording]] = defaultdict(list)
        self._taken: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        for recording in recordings or []:
            self._index(recording)

    @classmethod
    def create(cls, path: str | Path) -> Cassette:
        """A new, empty cassette to record into (an existing file is emptied)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
        return cls(path)

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        """A recorded cassette; recording into it again appends."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no cassette at {path}; record one first (--record)")
        recordings = []
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):  # JSON keeps U+2028 raw
            if not line.strip():
                continue
            try:
                recordings.append(Recording.model_validate_json(line))
            except ValidationError as exc:
                raise ValueError(f"{path}:{number}: not a cassette recording: {exc}") from exc
        return cls(path, recordings)

    def identities(self) -> list[str]:
        return list(dict.fromkeys(r.identity for r in self.recordings))

    def append(self, recording: Recording) -> None:
        line = recording.model_dump_json(exclude_none=True) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
            self._index(recording)

    def take(self, key: str) -> tuple[Recording | None, int]:
        """The next unreplayed recording of `key` (None when none is left) and how many of
        its recordings were replayed before."""
        with self._lock:
            taken = self._taken[key]
            found = self._by_key.get(key, [])
            if taken >= len(found):
                return None, taken
            self._taken[key] = taken + 1
            return found[taken], taken

    def _index(self, recording: Recording) -> None:
        self.recordings.append(recording)
        self._by_key[recording.key].append(recording)


class RecordingProvider(WrapperProvider):
    """Passes every call through and appends it to the cassette once it has finished."""

    def __init__(self, wrapped: LLMProvider, cassette: Cassette):
        super().__init__(wrapped)
        self.cassette = cassette

    @contextlib.contextmanager
    def _recording(self, request: ChatRequest, call: Literal["complete", "stream"]) -> Iterator[Recording]:
        recording = Recording(
            key=request.key(model=self.identity), identity=self.identity, model=self.model, call=call,
            request=request, chunks=[] if call == "stream" else None,
        )  # fmt: skip
        try:
            yield recording
        except ProviderError as error:
            recording.error = RecordedError.of(error)
            self.cassette.append(recording)
            raise
        self.cassette.append(recording)

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        with self._recording(request, "complete") as recording:
            recording.completion = self.wrapped.complete(request, timeout=timeout)
        return recording.completion

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        with self._recording(request, "complete") as recording:
            recording.completion = await self.wrapped.acomplete(request, timeout=timeout)
        return recording.completion

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        with self._recording(request, "stream") as recording:
            for chunk in self.wrapped.stream(request, timeout=timeout):
                recording.chunks.append(chunk)
                yield chunk

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        with self._recording(request, "stream") as recording:
            async for chunk in self.wrapped.astream(request, timeout=timeout):
                recording.chunks.append(chunk)
                yield chunk


class ReplayProvider(LLMProvider):
    """Answers from a cassette only: it holds no provider, so it cannot call a model.

    `identity` is the recorded stack's (`identity(stack)`), which request keys include; it may
    be left out when the cassette holds the calls of one stack only. `timeout` is ignored.
    """

    name = "replay"

    def __init__(self, cassette: Cassette | str | Path, *, identity: str | None = None):
        self.cassette = cassette if isinstance(cassette, Cassette) else Cassette.load(cassette)
        recorded = self.cassette.identities()
        if identity is None and len(recorded) > 1:
            raise ValueError(f"{self.cassette.path} holds calls of {recorded}; pass identity= to pick one")
        self.identity = identity or (recorded[0] if recorded else "replay")
        self.model = next((r.model for r in self.cassette.recordings if r.identity == self.identity), "replay")

    def _take(self, request: ChatRequest) -> Recording:
        key = request.key(model=self.identity)
        recording, taken = self.cassette.take(key)
        if recording is None:
            raise CassetteMiss(_miss_message(request, key, taken, self.identity, self.cassette.path))
        return recording

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return self._take(request).as_completion()

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return self.complete(request)

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        yield from self._take(request).as_chunks()

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        for chunk in self._take(request).as_chunks():
            yield chunk


def _miss_message(request: ChatRequest, key: str, taken: int, identity: str, path: Path) -> str:
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    preview = " ".join(last_user.split())
    if len(preview) > _PREVIEW_CHARS:
        preview = preview[: _PREVIEW_CHARS - 1] + "…"
    seen = f"all {taken} recordings of it were already replayed" if taken else "it was never recorded"
    return (
        f"cassette miss: request {key} to {identity} (prompt version {request.prompt_version or 'none'}, "
        f"last user message {preview!r}): {seen} in {path}; re-record with --record"
    )
