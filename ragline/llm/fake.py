"""`FakeProvider`: a scriptable model for testing pipelines and the reliability chain offline.

Like pydantic-ai's `TestModel` / `FunctionModel`: no weights, no server, exact control. A
script is a list of outcomes taken one per call (the last one repeats), or a function of the
request. An outcome is a reply (`str` or `Reply`), a failure (`Fail`: any `ErrorKind`, with
HTTP status and Retry-After), or a stream cut after some pieces (`CutStream`). Every request
is kept in `requests`, so a test can assert what the pipeline asked.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ragline.llm.base import ChatRequest, Completion, ErrorKind, LLMProvider, ProviderError, StreamChunk
from ragline.models import Usage

_PIECE = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Reply:
    """A successful answer; `finish_reason` "length" when `max_tokens` cut it."""

    text: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Fail:
    """The call fails with this kind (before any token when streaming)."""

    kind: ErrorKind
    status: int | None = None
    retry_after: float | None = None
    message: str = "scripted failure"


@dataclass(frozen=True)
class CutStream:
    """A stream that delivers its first `after` pieces of `text`, then drops the connection;
    `complete` fails the same way (the whole body never arrives)."""

    text: str
    after: int = 1


Outcome = str | Reply | Fail | CutStream
Script = Sequence[Outcome] | Callable[[ChatRequest], Outcome]


def pieces(text: str) -> list[str]:
    """How a fake stream splits text: one piece per word with its trailing space."""
    return _PIECE.findall(text)


class FakeProvider(LLMProvider):
    """Answers from a script. `delay` sleeps before each answer (deadline and timeout tests);
    usage counts words in the prompt and pieces in the answer."""

    def __init__(
        self, script: Script = ("ok",), *, name: str = "fake", model: str = "fake-model",
        context_window: int | None = None, delay: float = 0.0,
    ):  # fmt: skip
        if not callable(script) and not script:
            raise ValueError("a FakeProvider script needs at least one outcome")
        self.name = name
        self.model = model
        self.context_window = context_window
        self.delay = delay
        self.requests: list[ChatRequest] = []
        self.closed = False
        self._played = 0  # script outcomes used (a refused oversized prompt uses none)
        self._script = script
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _next(self, request: ChatRequest) -> Outcome:
        with self._lock:
            index = self._played
            self._played += 1
            self.requests.append(request)
        if callable(self._script):
            return self._script(request)
        return self._script[min(index, len(self._script) - 1)]

    def _error(self, fail: Fail, partial: str = "") -> ProviderError:
        return ProviderError(
            f"{self.name}: {fail.message}", provider=self.name, status=fail.status, kind=fail.kind,
            retry_after=fail.retry_after, partial_text=partial,
        )  # fmt: skip

    def _usage(self, request: ChatRequest, text: str) -> Usage:
        return Usage(prompt_tokens=self.count_prompt_tokens(request), completion_tokens=len(pieces(text)))

    def count_prompt_tokens(self, request: ChatRequest) -> int:
        return sum(len(m.content.split()) for m in request.messages)

    def _outcome(self, request: ChatRequest) -> Reply | CutStream:
        """The next scripted outcome (after `delay`); raises a scripted failure, or a
        context-length error when the prompt does not fit `context_window`."""
        prompt = self.count_prompt_tokens(request)
        if self.context_window is not None and prompt + request.max_tokens > self.context_window:
            with self._lock:
                self.requests.append(request)
            raise self._error(Fail(
                "context_length", status=400,
                message=f"{prompt} prompt tokens + {request.max_tokens} exceed the context window of {self.context_window}",
            ))  # fmt: skip
        outcome = self._next(request)
        if self.delay:
            time.sleep(self.delay)
        if isinstance(outcome, Fail):
            raise self._error(outcome)
        if isinstance(outcome, CutStream):
            return outcome
        reply = Reply(outcome) if isinstance(outcome, str) else outcome
        words = pieces(reply.text)
        if len(words) > request.max_tokens:
            return Reply("".join(words[: request.max_tokens]), finish_reason="length")
        return reply

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        reply = self._outcome(request)
        if isinstance(reply, CutStream):
            raise self._error(Fail("connection", message="connection dropped mid-response"))
        return Completion(
            text=reply.text, model=self.model, usage=self._usage(request, reply.text),
            finish_reason=reply.finish_reason, provider=self.name,
        )  # fmt: skip

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        reply = self._outcome(request)
        if isinstance(reply, CutStream):
            sent = pieces(reply.text)[: reply.after]
            yield from (StreamChunk(delta=piece) for piece in sent)
            raise self._error(Fail("connection", message="stream dropped"), partial="".join(sent))
        yield from (StreamChunk(delta=piece) for piece in pieces(reply.text))
        yield StreamChunk(
            usage=self._usage(request, reply.text), finish_reason=reply.finish_reason,
            model=self.model, provider=self.name,
        )  # fmt: skip

    def close(self) -> None:
        self.closed = True
