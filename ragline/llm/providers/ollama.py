"""A provider for Ollama's native chat API (`POST /api/chat`, NDJSON streaming): only the wire
format lives here, transport and errors in `http_common`. (Ollama's OpenAI-compatible `/v1`
works with `OpenAIProvider` too; the native API reports exact token counts when streaming.)"""

from __future__ import annotations

from typing import Any

from ragline.llm.base import ChatRequest, Completion
from ragline.llm.providers.http_common import HttpProvider, StreamState
from ragline.models import Usage


class OllamaProvider(HttpProvider):
    """Chat with a model an Ollama server has pulled, at `base_url` (default
    http://127.0.0.1:11434). `api_key`, when given, is sent as a bearer token for servers
    behind an authenticating proxy."""

    default_base_url = "http://127.0.0.1:11434"
    default_name = "ollama"
    path = "/api/chat"

    def _payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages],
            "stream": stream,  # Ollama streams unless told not to
            "options": {"num_predict": request.max_tokens, "temperature": request.temperature},
        }

    def _parse_completion(self, data: Any) -> Completion:
        return Completion(
            text=data["message"].get("content") or "",
            model=data.get("model") or self.model,
            usage=_usage(data),
            finish_reason=data.get("done_reason"),
            provider=self.name,
        )

    def _stream_payload(self, line: str, state: StreamState) -> str | None:
        return line.strip() or None  # one JSON object per line

    def _on_event(self, event: dict[str, Any], state: StreamState) -> str:
        if "error" in event:
            raise self._stream_error(event, state)
        if event.get("done"):
            state.done = True
            state.usage = _usage(event)
            state.finish_reason = event.get("done_reason") or "stop"
        return (event.get("message") or {}).get("content") or ""


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(data.get("prompt_eval_count") or 0),
        completion_tokens=int(data.get("eval_count") or 0),
    )
