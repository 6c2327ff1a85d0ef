"""Protocol-faithful HTTP servers on 127.0.0.1 for the provider tests, backed by real models.

Each chat server speaks one wire format (OpenAI chat completions, Anthropic Messages, Ollama
native) and answers with a real in-process `LLMProvider`, streaming as the model generates.

The first path segment picks a behaviour, so one server covers every failure: clients use
`server.base_url(case)`, e.g. ".../rate_limit/v1" (the cases: see `ChatHandler`).
Error bodies, status codes and stream framing are each protocol's own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragline.llm.base import ChatMessage, ChatRequest, Completion, ProviderError, StreamChunk

API_KEY = "sk-test-4f9c1d2e-very-secret"  # what the servers expect; it must never leak
RETRY_AFTER = 7  # seconds, sent with every 429
# case -> status answered before looking at the request
STATUS_CASES = {"rate_limit": 429, "boom": 500, "overloaded": 529}
STALL_SECONDS = 4.0  # silence of the slow and stall cases; tests time out well before


def question(max_tokens: int) -> ChatRequest:
    """The request the provider tests send: short, greedy, with a system prompt."""
    return ChatRequest(
        messages=[
            ChatMessage(role="system", content="You are a concise assistant."),
            ChatMessage(role="user", content="What is the capital of France?"),
        ],
        max_tokens=max_tokens,
        temperature=0.0,
    )


# Longer than SmolLM2's 2048-token context.
TOO_LONG = ChatRequest(messages=[ChatMessage(role="user", content="word " * 3000)], max_tokens=4)


class _LoadServer(ThreadingHTTPServer):
    """Load tests send it 100 requests at once: the default accept backlog of 5 overflows,
    and an overflowed connection is reset (seen in CI: ECONNRESET after 2 s of retransmits)."""

    request_queue_size = 256


class ProtocolServer:
    """A ThreadingHTTPServer running `handler` with a backend (a provider or an Embedder)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], backend: Any, api_key: str | None):
        self.handler = handler
        self.httpd = _LoadServer(("127.0.0.1", 0), handler)
        self.httpd.backend = backend
        self.httpd.api_key = api_key
        self.httpd.requests = []  # (case, body) per POST
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, dict]]:
        return self.httpd.requests

    def base_url(self, case: str = "ok") -> str:
        return f"{self.url}/{case}{self.handler.prefix}"

    def __enter__(self) -> ProtocolServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """Checks the API key (echoing a wrong one back), then hands the case to `handle_case`."""

    protocol_version = "HTTP/1.1"
    prefix = ""  # what a client's base_url adds after the case segment

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        case = self.path.split("/")[1]
        try:
            body = json.loads(raw or b"{}")
            self.server.requests.append((case, body))
            key = self.presented_key()
            if key != self.server.api_key:
                # Echoes the key back, as a careless server might: clients must redact it.
                self.send_json(401, self.error_body(401, f"invalid API key {key!r}"))
            else:
                self.handle_case(case, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            self.close_connection = True

    def presented_key(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth else None

    def handle_case(self, case: str, body: dict) -> None:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error")}}

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(body).encode(), headers)

    def send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


class ChatHandler(JsonHandler):
    """Cases: ok; rate_limit (429 + Retry-After), boom (500), overloaded (529); garbage (200,
    not JSON); slow (no answer for STALL_SECONDS); and for streams: cut (3 deltas, then the
    connection closes cleanly with no end marker), reset (3 deltas, then closes mid-chunked
    body), stall (2 deltas, then silence), error-event (2 deltas, then an error event)."""

    content_type = "text/event-stream"

    # --- what each protocol defines ---

    def chat_request(self, body: dict) -> ChatRequest:
        raise NotImplementedError

    def wants_stream(self, body: dict) -> bool:
        return bool(body.get("stream", False))

    def completion_body(self, completion: Completion, request: ChatRequest) -> Any:
        raise NotImplementedError

    def start_frames(self, request: ChatRequest) -> Iterable[str]:
        return ()

    def delta_frame(self, text: str) -> str:
        raise NotImplementedError

    def end_frames(self, final: StreamChunk, request: ChatRequest) -> Iterable[str]:
        raise NotImplementedError

    def error_frame(self) -> str:
        raise NotImplementedError

    # --- shared behaviour ---

    def handle_case(self, case: str, body: dict) -> None:
        if case in STATUS_CASES:
            status = STATUS_CASES[case]
            headers = {"Retry-After": str(RETRY_AFTER)} if status == 429 else None
            return self.send_json(status, self.error_body(status, f"injected {case}"), headers)
        if case == "garbage":
            return self.send_bytes(200, b"{not json")
        if case == "slow":
            time.sleep(STALL_SECONDS)
            return self.send_json(500, self.error_body(500, "too late"))
        try:
            request = self.chat_request(body)
        except (KeyError, TypeError, ValueError) as exc:
            return self.send_json(400, self.error_body(400, f"invalid request: {exc!r}"))
        try:
            if self.wants_stream(body):
                self.stream(case, request)
            else:
                completion = self.server.backend.complete(request)
                self.send_json(200, self.completion_body(completion, request))
        except ProviderError as exc:  # raised before any byte of a stream was sent
            status = 400 if exc.kind == "context_length" else 500
            self.send_json(status, self.error_body(status, str(exc)))

    def stream(self, case: str, request: ChatRequest) -> None:
        chunked = case != "cut"  # without chunking, closing the connection ends the body
        with contextlib.closing(self.server.backend.stream(request)) as chunks:
            first = next(chunks)  # a prompt error surfaces here, before the status line
            self.send_response(200)
            self.send_header("Content-Type", self.content_type)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            write = self._chunk_writer(chunked)
            for frame in self.start_frames(request):
                write(frame)
            deltas = 0
            for chunk in itertools.chain([first], chunks):
                if not chunk.delta:
                    final = chunk
                    continue
                write(self.delta_frame(chunk.delta))
                deltas += 1
                if (case in ("cut", "reset") and deltas == 3) or (case == "stall" and deltas == 2):
                    chunks.close()  # frees the model for other requests while this one stalls
                    time.sleep(STALL_SECONDS if case == "stall" else 0)
                    self.close_connection = True
                    return
                if case == "error-event" and deltas == 2:
                    write(self.error_frame())
                    break
            else:
                for frame in self.end_frames(final, request):
                    write(frame)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _chunk_writer(self, chunked: bool):
        def write(frame: str) -> None:
            data = frame.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        return write


def _messages(raw: list[dict]) -> list[ChatMessage]:
    return [ChatMessage(role=m["role"], content=m["content"]) for m in raw]


_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded",
}  # fmt: skip


class OpenAIHandler(ChatHandler):
    """POST /<case>/v1/chat/completions, as OpenAI and llama.cpp's server answer it."""

    prefix = "/v1"

    def chat_request(self, body: dict) -> ChatRequest:
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return ChatRequest(
            messages=_messages(body["messages"]),
            max_tokens=body.get("max_tokens") or 256,
            temperature=body.get("temperature", 1.0),
        )

    def completion_body(self, completion: Completion, request: ChatRequest) -> Any:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": completion.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }],
            "usage": _openai_usage(completion.usage),
        }  # fmt: skip

    def start_frames(self, request: ChatRequest) -> Iterable[str]:
        yield _sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})

    def delta_frame(self, text: str) -> str:
        return _sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})

    def end_frames(self, final: StreamChunk, request: ChatRequest) -> Iterable[str]:
        yield _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": final.finish_reason}]})
        if self.include_usage:
            yield _sse({"choices": [], "usage": _openai_usage(final.usage)})
        yield "data: [DONE]\n\n"

    def error_frame(self) -> str:
        return _sse({"error": {"message": "The server had an error", "type": "server_error"}})


def _openai_usage(usage: Any) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _event(data: dict) -> str:
    """An Anthropic SSE event: named after its payload's type."""
    return f"event: {data['type']}\n" + _sse(data)


_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}  # fmt: skip
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


class AnthropicHandler(ChatHandler):
    """POST /<case>/v1/messages, in the Anthropic Messages wire format (API 2023-06-01)."""

    def presented_key(self) -> str | None:
        return self.headers.get("x-api-key")

    def error_body(self, status: int, message: str) -> dict:
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPES[status], "message": message}}

    def chat_request(self, body: dict) -> ChatRequest:
        if self.headers.get("anthropic-version") != "2023-06-01":
            raise ValueError("anthropic-version header missing or unknown")
        system = [ChatMessage(role="system", content=body["system"])] if "system" in body else []
        return ChatRequest(
            messages=system + _messages(body["messages"]),
            max_tokens=body["max_tokens"],  # required by the API
            temperature=body.get("temperature", 1.0),
        )

    def completion_body(self, completion: Completion, request: ChatRequest) -> Any:
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": completion.model,
            "content": [{"type": "text", "text": completion.text}],
            "stop_reason": _STOP_REASONS.get(completion.finish_reason, completion.finish_reason),
            "stop_sequence": None,
            "usage": {
                "input_tokens": completion.usage.prompt_tokens,
                "output_tokens": completion.usage.completion_tokens,
            },
        }

    def start_frames(self, request: ChatRequest) -> Iterable[str]:
        prompt_tokens = self.server.backend.count_prompt_tokens(request)
        message = {
            "id": "msg_test", "type": "message", "role": "assistant", "content": [],
            "model": "smollm2", "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
        }  # fmt: skip
        yield _event({"type": "message_start", "message": message})
        block = {"type": "text", "text": ""}
        yield _event({"type": "content_block_start", "index": 0, "content_block": block})
        yield _event({"type": "ping"})

    def delta_frame(self, text: str) -> str:
        delta = {"type": "text_delta", "text": text}
        return _event({"type": "content_block_delta", "index": 0, "delta": delta})

    def end_frames(self, final: StreamChunk, request: ChatRequest) -> Iterable[str]:
        yield _event({"type": "content_block_stop", "index": 0})
        stop = _STOP_REASONS.get(final.finish_reason, final.finish_reason)
        yield _event({
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": final.usage.completion_tokens},
        })  # fmt: skip
        yield _event({"type": "message_stop"})

    def error_frame(self) -> str:
        return _event(self.error_body(529, "Overloaded"))


class OllamaHandler(ChatHandler):
    """POST /<case>/api/chat, in Ollama's native format (NDJSON when streaming, the default)."""

    content_type = "application/x-ndjson"

    def error_body(self, status: int, message: str) -> dict:
        return {"error": message}

    def wants_stream(self, body: dict) -> bool:
        return bool(body.get("stream", True))

    def chat_request(self, body: dict) -> ChatRequest:
        options = body.get("options") or {}
        return ChatRequest(
            messages=_messages(body["messages"]),
            max_tokens=options.get("num_predict") or 128,
            temperature=options.get("temperature", 0.8),
        )

    def completion_body(self, completion: Completion, request: ChatRequest) -> Any:
        return self._final(completion.text, completion.finish_reason, completion.usage)

    def delta_frame(self, text: str) -> str:
        message = {"role": "assistant", "content": text}
        line = {"model": "smollm2", "created_at": _now(), "message": message, "done": False}
        return json.dumps(line) + "\n"

    def end_frames(self, final: StreamChunk, request: ChatRequest) -> Iterable[str]:
        yield json.dumps(self._final("", final.finish_reason, final.usage)) + "\n"

    def error_frame(self) -> str:
        return json.dumps({"error": "an error was encountered while running the model"}) + "\n"

    def _final(self, text: str, finish_reason: str | None, usage: Any) -> dict:
        return {
            "model": "smollm2", "created_at": _now(),
            "message": {"role": "assistant", "content": text},
            "done": True, "done_reason": finish_reason,
            "total_duration": 1, "load_duration": 1, "prompt_eval_duration": 1, "eval_duration": 1,
            "prompt_eval_count": usage.prompt_tokens, "eval_count": usage.completion_tokens,
        }  # fmt: skip


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EmbeddingsHandler(JsonHandler):
    """POST /<case>/v1/embeddings backed by a real Embedder. Cases: ok; raw (vectors scaled
    by 3, as servers that do not normalize send them); short (one vector missing); boom
    (500); garbage (200, not JSON)."""

    prefix = "/v1"

    def handle_case(self, case: str, body: dict) -> None:
        if case == "boom":
            return self.send_json(500, self.error_body(500, "embedding backend down"))
        if case == "garbage":
            return self.send_bytes(200, b"{not json")
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = self.server.backend.embed(texts)
        scale = 3.0 if case == "raw" else 1.0
        data = [
            {"object": "embedding", "index": i, "embedding": [x * scale for x in vector]}
            for i, vector in enumerate(vectors)
        ]
        data.reverse()  # clients must order by "index", not by position
        if case == "short":
            data.pop()
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        reply = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        self.send_json(200, reply)
