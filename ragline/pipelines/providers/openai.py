"""A provider for any OpenAI-compatible `/chat/completions` server (OpenAI, vLLM, llama.cpp, ...).

Speaks the wire format over a sync httpx client and turns every failure into a ProviderError,
so the reliability wrappers can retry or fall back without knowing about HTTP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx

from ragline.models import Usage
from ragline.pipelines.providers.base import (
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)

_MAX_ERROR_CHARS = 500


class OpenAIProvider(LLMProvider):
    """Chat completions against `base_url` (e.g. "http://127.0.0.1:8080/v1")."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60.0,
        name: str = "openai",
    ):
        self.model = model
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout)
        )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIProvider(model={self.model!r}, base_url={self.base_url!r})"

    def complete(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Completion:
        payload = self._payload(messages, max_tokens, temperature, stream=False)
        try:
            response = self._client.post("/chat/completions", json=payload)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if not response.is_success:
            raise self._status_error(response)
        data = self._json(response.text, response.status_code)
        try:
            choice = data["choices"][0]
            return Completion(
                text=choice["message"].get("content") or "",
                model=data.get("model") or self.model,
                usage=_usage(data.get("usage")) or Usage(),
                finish_reason=choice.get("finish_reason"),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._error(f"unexpected response shape ({exc!r})", response.status_code) from exc

    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Iterator[StreamChunk]:
        """Yield text deltas, then one chunk with usage and finish reason.

        Usage is the server's when it honours `stream_options.include_usage`. When it sends
        none, usage is an estimate: completion tokens = the number of non-empty deltas
        (OpenAI and llama.cpp send one token per event) and prompt tokens = characters / 4.
        """
        payload = self._payload(messages, max_tokens, temperature, stream=True)
        payload["stream_options"] = {"include_usage": True}
        usage: Usage | None = None
        finish_reason: str | None = None
        deltas = 0
        try:
            with self._client.stream("POST", "/chat/completions", json=payload) as response:
                if not response.is_success:
                    response.read()
                    raise self._status_error(response)
                for event in _sse_events(response.iter_lines()):
                    data = self._json(event, response.status_code)
                    if not isinstance(data, dict):
                        raise self._error("unexpected stream event", response.status_code)
                    if "error" in data:
                        raise self._error(
                            f"stream error: {_error_message(data)}", response.status_code
                        )
                    usage = _usage(data.get("usage")) or usage
                    for choice in data.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content") or ""
                        finish_reason = choice.get("finish_reason") or finish_reason
                        if delta:
                            deltas += 1
                            yield StreamChunk(delta=delta)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if usage is None:
            prompt_chars = sum(len(m.content) for m in messages)
            usage = Usage(prompt_tokens=math.ceil(prompt_chars / 4), completion_tokens=deltas)
        yield StreamChunk(usage=usage, finish_reason=finish_reason)

    def close(self) -> None:
        self._client.close()

    def _payload(
        self, messages: list[ChatMessage], max_tokens: int, temperature: float, *, stream: bool
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }

    def _json(self, text: str, status: int) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise self._error(f"malformed JSON from server: {text[:200]!r}", status) from None

    def _status_error(self, response: httpx.Response) -> ProviderError:
        try:
            message = _error_message(response.json())
        except ValueError:
            message = response.text.strip()
        message = message[:_MAX_ERROR_CHARS] or response.reason_phrase
        return self._error(f"HTTP {response.status_code}: {message}", response.status_code)

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            what = f"timed out talking to {self.base_url}"
        elif isinstance(exc, httpx.ConnectError):
            what = f"could not connect to {self.base_url}"
        else:
            what = f"connection to {self.base_url} failed"
        return self._error(f"{what} ({type(exc).__name__}: {exc})")

    def _error(self, message: str, status: int | None = None) -> ProviderError:
        """Every error goes through here so the API key can never leak into a message."""
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return ProviderError(f"{self.name}: {message}", provider=self.name, status=status)


def _sse_events(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event/id fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        if data:
            yield data


def _error_message(body: Any) -> str:
    """The message of an OpenAI-style `{"error": {"message": ...}}` body, or the body itself."""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(error, str):
            return error
        return json.dumps(error)
    return json.dumps(body)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )
