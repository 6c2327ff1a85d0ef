"""A provider for Anthropic's Messages API (`POST /v1/messages`), spoken over plain httpx: only
the wire format lives here, transport and errors in `http_common`."""

from __future__ import annotations

from typing import Any

from ragline.llm.base import (
    ChatRequest,
    Completion,
    ErrorKind,
    classify,
)
from ragline.llm.providers.http_common import (
    HttpProvider,
    StreamState,
    error_message,
    sse_data,
)
from ragline.models import Usage

API_VERSION = "2023-06-01"

# Anthropic's stop reasons in the OpenAI vocabulary the rest of ragline uses.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}

# The HTTP status each error type comes with, to classify errors sent inside a stream.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider(HttpProvider):
    """Claude models via `base_url` (default https://api.anthropic.com).

    System messages become the top-level `system` prompt; the others are sent in order.
    Stop reasons are mapped to "stop"/"length" like the other providers'.
    """

    default_base_url = "https://api.anthropic.com"
    default_name = "anthropic"
    path = "/v1/messages"
    requires_key = True

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role == "system"]
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages if m.role != "system"],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }
        if system:
            payload["system"] = "\n\n".join(system)
        return payload

    def _parse_completion(self, data: Any) -> Completion:
        text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
        return Completion(
            text=text,
            model=data.get("model") or self.model,
            usage=Usage(
                prompt_tokens=int(data["usage"]["input_tokens"]),
                completion_tokens=int(data["usage"]["output_tokens"]),
            ),
            finish_reason=_finish_reason(data.get("stop_reason")),
            provider=self.name,
        )

    def _stream_payload(self, line: str, state: StreamState) -> str | None:
        return sse_data(line, state)  # every data payload names its own event type

    def _on_event(self, event: dict[str, Any], state: StreamState) -> str:
        kind = event.get("type")
        if kind == "content_block_delta" and event["delta"].get("type") == "text_delta":
            return event["delta"]["text"]
        if kind == "message_start":
            usage = event["message"].get("usage") or {}
            state.usage = Usage(prompt_tokens=int(usage.get("input_tokens") or 0))
        elif kind == "message_delta":
            state.finish_reason = _finish_reason(event["delta"].get("stop_reason"))
            if "usage" in event:
                state.usage = state.usage or Usage()
                state.usage.completion_tokens = int(event["usage"]["output_tokens"])
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            raise self._stream_error(event, state, _error_kind(event))
        return ""  # content_block_start/stop, ping, and event types added later


def _finish_reason(stop_reason: str | None) -> str | None:
    return _FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None


def _error_kind(event: dict[str, Any]) -> ErrorKind:
    error = event.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    return classify(_ERROR_STATUS.get(error_type, 500), error_message(event))
