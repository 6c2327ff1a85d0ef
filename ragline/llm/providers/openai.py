"""A provider for any OpenAI-compatible `/chat/completions` server (OpenAI, vLLM, llama.cpp
server, Ollama's /v1, ...): only the wire format lives here, transport and errors in
`http_common`."""

from __future__ import annotations

from typing import Any

from ragline.llm.base import ChatRequest, Completion
from ragline.llm.providers.http_common import HttpProvider, StreamState, sse_data
from ragline.models import Usage


class OpenAIProvider(HttpProvider):
    """Chat completions against `base_url` (e.g. "http://127.0.0.1:8080/v1").

    Streams ask for `stream_options.include_usage`; a server that ignores it gets its usage
    estimated (see `HttpProvider._final_chunk`). A stream is complete at `[DONE]` or once a
    choice reported its finish reason; ending before both is a cut connection.
    """

    default_base_url = "https://api.openai.com/v1"
    default_name = "openai"
    path = "/chat/completions"

    def _payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        payload = {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _parse_completion(self, data: Any) -> Completion:
        choice = data["choices"][0]
        return Completion(
            text=choice["message"].get("content") or "",
            model=data.get("model") or self.model,
            usage=_usage(data.get("usage")) or Usage(),
            finish_reason=choice.get("finish_reason"),
            provider=self.name,
        )

    def _stream_payload(self, line: str, state: StreamState) -> str | None:
        return sse_data(line, state)

    def _on_event(self, event: dict[str, Any], state: StreamState) -> str:
        if "error" in event:
            raise self._stream_error(event, state)
        state.usage = _usage(event.get("usage")) or state.usage
        delta = ""
        for choice in event.get("choices") or []:
            delta += (choice.get("delta") or {}).get("content") or ""
            state.finish_reason = choice.get("finish_reason") or state.finish_reason
        return delta


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )
