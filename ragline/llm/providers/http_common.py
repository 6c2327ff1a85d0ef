"""What every HTTP wire protocol shares: transport, timeouts, error mapping and stream bookkeeping.

A protocol subclass only says where to POST, how to build the payload and how to read a
response or one streamed line. Sync and async calls run the same code around a different
transport call (`httpx.Client` vs `httpx.AsyncClient`), so the two paths cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ragline.llm.base import (
    ChatRequest,
    Completion,
    ErrorKind,
    LLMProvider,
    ProviderError,
    StreamChunk,
    classify,
    parse_retry_after,
)
from ragline.models import Usage

_MAX_ERROR_CHARS = 500
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)
IDLE_CONNECTION_SECONDS = 3.0  # below uvicorn's 5 s keep-alive (see the client's limits)


class StreamState:
    """What one stream has delivered so far; protocol parsers fill it event by event."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False  # the protocol's end-of-stream marker arrived: stop reading

    @property
    def text(self) -> str:
        return "".join(self.parts)


class HttpProvider(LLMProvider):
    """An LLM behind one HTTP endpoint. `timeout` (seconds) is the default per call and bounds
    connecting and each read, so for streams it is the wait for each next piece."""

    default_base_url: str
    default_name: str
    path: str  # POSTed to, relative to base_url
    requires_key = False  # the API refuses every request without a key: fail before sending

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        name: str | None = None,
        context_window: int | None = None,
        missing_key: str | None = None,
    ):
        """`missing_key` says where the absent key should have come from ("$OPENAI_API_KEY is
        not set"): auth failures name it, so a user does not debug a bare HTTP 401."""
        self.model = model
        self.name = name or self.default_name
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.context_window = context_window
        self._api_key = api_key
        self._missing_key = missing_key or "no API key was given"
        self._client_args = {
            "base_url": self.base_url,
            "headers": self._headers(api_key),
            "timeout": httpx.Timeout(timeout),
            # Idle connections are dropped before the 5 s after which uvicorn (behind vLLM,
            # llama.cpp's Python server and most self-hosted gateways) closes them: at httpx's
            # own 5 s the pool can hand out a connection the server is closing, and the call
            # fails with a ReadError that counts against the breaker.
            "limits": httpx.Limits(keepalive_expiry=IDLE_CONNECTION_SECONDS),
        }
        self._client = httpx.Client(**self._client_args)
        # An AsyncClient's connections belong to one event loop; a new loop gets a new client.
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    # --- the protocol: what a subclass implements ----------------------------------------

    def _headers(self, api_key: str | None) -> dict[str, str]:
        """Headers sent with every request: a bearer token, unless the protocol says otherwise."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @abstractmethod
    def _payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body for one call."""

    @abstractmethod
    def _parse_completion(self, data: Any) -> Completion:
        """A Completion from a non-streamed response body (shape errors become `malformed`)."""

    @abstractmethod
    def _stream_payload(self, line: str, state: StreamState) -> str | None:
        """The JSON text carried by one streamed line, or None for framing lines to skip."""

    @abstractmethod
    def _on_event(self, event: dict[str, Any], state: StreamState) -> str:
        """Apply one streamed JSON object to `state`; return its text delta ("" for none)."""

    # --- sync and async calls: the same steps around a different transport ---------------

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        self._require_key()
        with self._mapped_errors():
            response = self._client.post(self.path, **self._request_args(request, timeout, False))
        return self._completion(response)

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        self._require_key()
        with self._mapped_errors():
            client = self._async_client()
            response = await client.post(self.path, **self._request_args(request, timeout, False))
        return self._completion(response)

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        self._require_key()
        state = StreamState()
        with self._mapped_errors(state):
            args = self._request_args(request, timeout, True)
            with self._client.stream("POST", self.path, **args) as response:
                if not response.is_success:
                    raise self._status_error(response, response.read())
                for line in response.iter_lines():
                    if chunk := self._feed(line, state, response.status_code):
                        yield chunk
                    if state.done:
                        break
        yield self._final_chunk(request, state)

    async def astream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        self._require_key()
        state = StreamState()
        with self._mapped_errors(state):
            args = self._request_args(request, timeout, True)
            async with self._async_client().stream("POST", self.path, **args) as response:
                if not response.is_success:
                    raise self._status_error(response, await response.aread())
                async for line in response.aiter_lines():
                    if chunk := self._feed(line, state, response.status_code):
                        yield chunk
                    if state.done:
                        break
        yield self._final_chunk(request, state)

    def close(self) -> None:
        self._client.close()
        self._aclient = None  # its connections close with their event loop

    async def aclose(self) -> None:
        if self._aclient is not None and self._aclient_loop is asyncio.get_running_loop():
            await self._aclient.aclose()
        self.close()

    # --- shared steps ----------------------------------------------------------------------

    def _require_key(self) -> None:
        if self.requires_key and not self._api_key:
            raise self._error(f"no API key ({self._missing_key})", kind="auth")

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = httpx.AsyncClient(**self._client_args)
            self._aclient_loop = loop
        return self._aclient

    def _request_args(self, request: ChatRequest, timeout: float | None, stream: bool) -> dict:
        return {
            "json": self._payload(request, stream=stream),
            "timeout": httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout),
        }

    def _completion(self, response: httpx.Response) -> Completion:
        if not response.is_success:
            raise self._status_error(response, response.content)
        data = self._json(response.text, response.status_code)
        try:
            return self._parse_completion(data)
        except _SHAPE_ERRORS as exc:
            raise self._malformed(f"unexpected response shape ({exc!r})", response.status_code)

    def _feed(self, line: str, state: StreamState, status: int) -> StreamChunk | None:
        payload = self._stream_payload(line, state)
        if payload is None:
            return None
        event = self._json(payload, status, state)
        if not isinstance(event, dict):
            raise self._malformed(f"unexpected stream event {payload[:200]!r}", status, state)
        try:
            delta = self._on_event(event, state)
        except _SHAPE_ERRORS as exc:
            raise self._malformed(f"unexpected stream event ({exc!r})", status, state)
        if not delta:
            return None
        state.parts.append(delta)
        return StreamChunk(delta=delta)

    def _final_chunk(self, request: ChatRequest, state: StreamState) -> StreamChunk:
        """The closing chunk; a stream that just stopped, with no end marker, was cut.

        When the server reported no usage it is estimated: one token per streamed delta
        (servers send about one token per event) and four prompt characters per token.
        """
        if not state.done and state.finish_reason is None:
            raise self._error(
                f"the stream from {self.base_url} ended before the answer was complete",
                kind="connection",
                partial_text=state.text,
            )
        usage = state.usage or Usage(
            prompt_tokens=math.ceil(request.prompt_chars() / 4), completion_tokens=len(state.parts)
        )
        return StreamChunk(usage=usage, finish_reason=state.finish_reason)

    @contextlib.contextmanager
    def _mapped_errors(self, state: StreamState | None = None) -> Iterator[None]:
        """httpx failures become ProviderErrors carrying what a stream had delivered."""
        try:
            yield
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException):
                what, kind = f"timed out talking to {self.base_url}", "timeout"
            elif isinstance(exc, httpx.ConnectError):
                what, kind = f"could not connect to {self.base_url}", "connection"
            elif isinstance(exc, httpx.DecodingError):
                what, kind = f"undecodable response from {self.base_url}", "malformed"
            else:
                what, kind = f"connection to {self.base_url} failed", "connection"
            raise self._error(
                f"{what} ({type(exc).__name__}: {exc})",
                kind=kind,
                partial_text=state.text if state else "",
            ) from None

    def _json(self, text: str, status: int, state: StreamState | None = None) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise self._malformed(f"malformed JSON from server: {text[:200]!r}", status, state)

    def _status_error(self, response: httpx.Response, body: bytes) -> ProviderError:
        text = body.decode("utf-8", "replace")
        try:
            message = error_message(json.loads(text))
        except ValueError:
            message = text.strip()
        message = message[:_MAX_ERROR_CHARS] or response.reason_phrase
        if response.status_code in (401, 403) and not self._api_key:
            message += f" ({self._missing_key})"
        return self._error(
            f"HTTP {response.status_code}: {message}",
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _stream_error(
        self, event: Any, state: StreamState, kind: ErrorKind | None = None
    ) -> ProviderError:
        """An error the server sent inside a successful stream; without a `kind` from the
        protocol it is a server fault unless it says the prompt did not fit."""
        message = error_message(event)[:_MAX_ERROR_CHARS]
        if kind is None:
            kind = "context_length" if classify(400, message) == "context_length" else "server"
        return self._error(f"stream error: {message}", kind=kind, partial_text=state.text)

    def _malformed(self, message: str, status: int, state: StreamState | None = None) -> ProviderError:
        text = state.text if state else ""
        return self._error(message, status=status, kind="malformed", partial_text=text)

    def _error(self, message: str, **details: Any) -> ProviderError:
        """Every error goes through here so the API key can never leak into a message."""
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return ProviderError(f"{self.name}: {message}", provider=self.name, **details)


def sse_data(line: str, state: StreamState) -> str | None:
    """The `data:` payload of one server-sent-event line; `[DONE]` ends the stream. A line
    that is no SSE at all is returned whole, to be parsed (a bare JSON error) or rejected."""
    if not line.strip() or line.startswith((":", "event:", "id:", "retry:")):
        return None  # blank separators, comments (": ping"), other fields
    if not line.startswith("data:"):
        return line
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        state.done = True
        return None
    return data or None


def error_message(body: Any) -> str:
    """The message of an error body: OpenAI/Anthropic `{"error": {"type", "message"}}`, Ollama
    `{"error": "..."}`, FastAPI `{"detail": ...}`, or the body itself."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict) and "message" in error:
            kind = error.get("type")
            return f"{kind}: {error['message']}" if isinstance(kind, str) else str(error["message"])
        if isinstance(error, str):
            return error
        return json.dumps(error)
    return json.dumps(body)
