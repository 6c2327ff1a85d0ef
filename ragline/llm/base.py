"""The one small model protocol every LLM provider implements.

A provider only speaks its wire format and classifies its failures into the `ErrorKind`s the
layers above act on. Those layers are of two sorts, on purpose. Retry, fallback, circuit
breaking and the budget live together in one chain (`ragline.llm.chain`), because they must
share one attempt limit, one deadline and one cost reservation per try: stacked as separate
wrappers, a fallback would restart the retries and a retry would escape the budget. The
concerns that are independent of one call's tries (response cache, record/replay, tracing)
are single-concern wrappers over this same protocol (`ragline.llm.wrappers`).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from pydantic import BaseModel, Field

from ragline.models import Attempt, Usage

# What went wrong, as far as retry and fallback policy care.
ErrorKind = Literal[
    "rate_limit",  # 429
    "server",  # 5xx
    "timeout",  # no answer (or no next token) in time
    "connection",  # refused, reset, dropped mid-response
    "context_length",  # the prompt does not fit the model's window
    "bad_request",  # other 4xx: the request itself is wrong
    "auth",  # 401 / 403
    "malformed",  # the server answered something that is not the protocol
    "circuit_open",  # skipped by the circuit breaker, never sent
]

_CONTEXT_LENGTH_HINTS = (
    "context length", "context_length", "context window", "maximum context", "too many tokens",
    "prompt is too long", "exceeds the context", "input length", "max_model_len",
)  # fmt: skip


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """Everything that decides a completion; its `key()` addresses caches and cassettes."""

    messages: list[ChatMessage]
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    prompt_version: str | None = Field(None, description="Content hash of the prompt template.")
    partition: str | None = Field(
        None, description="Hash of the caller's effective principals (access control): never sent to a provider; "
        "caches and cassettes keep each principal set's completions apart by it.",
    )

    def key(self, *, model: str) -> str:
        """sha256 over model identity, parameters, rendered messages, prompt version and the
        caller's partition (left out when None, so keys made before access control hold)."""
        body = {"model": model, **self.model_dump(exclude={"partition"})}
        if self.partition is not None:
            body["partition"] = self.partition
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def prompt_chars(self) -> int:
        return sum(len(m.content) for m in self.messages)


class Completion(BaseModel):
    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    provider: str | None = Field(None, description="Name of the provider that answered.")
    cost_usd: float = 0.0
    cached: bool = False
    attempts: list[Attempt] = Field(default_factory=list)


class StreamChunk(BaseModel):
    """One streamed piece: a text delta, or (last) the final usage/finish reason.

    The wrappers fill the final chunk's `model`, `provider`, `cost_usd`, `cached` and
    `attempts`, so a streamed answer carries the same record as a completed one.
    """

    delta: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    provider: str | None = None
    cost_usd: float | None = None
    cached: bool = False
    attempts: list[Attempt] = Field(default_factory=list)


class ProviderError(RuntimeError):
    """A provider call failed. `kind` drives retry/fallback; `status` is the HTTP status when
    there was one; `retry_after` is the server's Retry-After in seconds; `partial_text` is
    what a stream delivered before it broke."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        kind: ErrorKind | None = None,
        retry_after: float | None = None,
        partial_text: str = "",
    ):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.kind: ErrorKind = kind or classify(status, message)
        self.retry_after = retry_after
        self.partial_text = partial_text


class StreamInterrupted(ProviderError):
    """A stream failed after its first token: no silent switch to another provider, the
    caller gets the partial text and decides."""


def classify(status: int | None, message: str = "") -> ErrorKind:
    """The error kind of an HTTP status (None: the request never got an answer)."""
    if status is None:
        return "context_length" if _mentions_context_length(message) else "connection"
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server"
    if status in (400, 413, 422) and _mentions_context_length(message):
        return "context_length"
    return "bad_request"


def _mentions_context_length(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _CONTEXT_LENGTH_HINTS)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date counts as unknown)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class LLMProvider(ABC):
    """One model behind one wire protocol. Sync methods are the primitive; the async defaults
    run them in a worker thread, and HTTP providers override them with native async I/O.

    `timeout` bounds one call (for streams: the wait for each next piece); None means the
    provider's own default. Wrappers pass the time left before the query's deadline.
    """

    name: str
    model: str
    context_window: int | None = None

    @abstractmethod
    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        """One chat completion."""

    @abstractmethod
    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        """The same completion as text deltas; the last chunk carries usage and finish reason."""

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return await asyncio.to_thread(self.complete, request, timeout=timeout)

    async def astream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        async for chunk in iterate_in_thread(lambda: self.stream(request, timeout=timeout)):
            yield chunk

    def count_prompt_tokens(self, request: ChatRequest) -> int | None:
        """Exact prompt tokens when the provider can count them locally, else None."""
        return None

    def close(self) -> None:
        """Release connections or model memory."""

    async def aclose(self) -> None:
        self.close()


_DONE = object()


async def iterate_in_thread(make_iterator) -> AsyncIterator:
    """Drive a blocking iterator in a worker thread, handing items to the event loop as they
    come (a blocking generator must never run on the loop). Closing early stops the thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    stop = threading.Event()

    def put(item) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def run() -> None:
        iterator = make_iterator()
        try:
            for item in iterator:
                if stop.is_set():
                    break
                put(item)
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    worker = loop.run_in_executor(None, contextvars.copy_context().run, run)  # spans stay in the trace
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not worker.done():  # unblock a producer waiting on a full queue
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        await worker
