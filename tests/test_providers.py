"""Providers against real backends: in-process llama.cpp, a real llama_cpp.server, and a tiny
misbehaving HTTP server for error mapping. Nothing of ours is mocked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from llm_server import free_port, start_llama_server

from ragline.pipelines.providers import (
    ChatMessage,
    LlamaCppProvider,
    LLMProvider,
    OpenAIProvider,
    ProviderError,
    StreamChunk,
    bundled_gguf_path,
)

API_KEY = "sk-test-4f9c1d2e-very-secret"
PROMPT = [
    ChatMessage(role="system", content="You are a concise assistant."),
    ChatMessage(role="user", content="What is the capital of France?"),
]


def _check_stream(chunks: list[StreamChunk], max_tokens: int) -> str:
    """Deltas come first, the final chunk carries usage; returns the streamed text."""
    *deltas, last = chunks
    assert deltas and all(c.delta and c.usage is None for c in deltas)
    assert last.delta == "" and last.usage is not None
    assert last.usage.prompt_tokens > 0
    assert 0 < last.usage.completion_tokens <= max_tokens
    assert last.finish_reason in ("stop", "length")
    text = "".join(c.delta for c in deltas)
    assert text.strip()
    return text


def _check_complete_and_stream(provider: LLMProvider) -> None:
    done = provider.complete(PROMPT, max_tokens=16, temperature=0.0)
    assert done.text.strip()
    assert done.usage.prompt_tokens > 0
    assert 0 < done.usage.completion_tokens <= 16
    assert done.finish_reason in ("stop", "length")

    streamed = _check_stream(list(provider.stream(PROMPT, max_tokens=16, temperature=0.0)), 16)
    assert streamed == done.text  # greedy decoding: same text either way


# --- in-process llama.cpp ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def llamacpp() -> Iterator[LlamaCppProvider]:
    provider = LlamaCppProvider()
    yield provider
    provider.close()


def test_llamacpp_complete_and_stream(llamacpp: LlamaCppProvider) -> None:
    assert llamacpp.model == "SmolLM2-135M-Instruct.Q4_1"
    _check_complete_and_stream(llamacpp)


def test_llamacpp_stream_usage_matches_complete(llamacpp: LlamaCppProvider) -> None:
    done = llamacpp.complete(PROMPT, max_tokens=8, temperature=0.0)
    last = list(llamacpp.stream(PROMPT, max_tokens=8, temperature=0.0))[-1]
    assert last.usage == done.usage


def test_llamacpp_prompt_longer_than_context() -> None:
    provider = LlamaCppProvider(n_ctx=64)
    assert provider.n_ctx == 256  # llama.cpp's own padding, made explicit
    long = [ChatMessage(role="user", content="word " * 300)]
    try:
        with pytest.raises(ProviderError, match="context") as err:
            provider.complete(long, max_tokens=4, temperature=0.0)
        assert err.value.status is None and err.value.provider == "llamacpp"
        with pytest.raises(ProviderError, match="context"):
            list(provider.stream(long, max_tokens=4, temperature=0.0))
    finally:
        provider.close()


def test_missing_model_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        LlamaCppProvider(str(tmp_path / "nope.gguf"))


# --- OpenAI wire format against a real llama_cpp.server ---------------------------------------


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with start_llama_server(bundled_gguf_path()) as url:
        yield url


@pytest.fixture()
def served(server_url: str) -> Iterator[OpenAIProvider]:
    provider = OpenAIProvider("smollm2", base_url=server_url, api_key=API_KEY, timeout=60)
    yield provider
    provider.close()


def test_openai_against_llama_server(served: OpenAIProvider) -> None:
    _check_complete_and_stream(served)


def test_openai_server_error_is_mapped(served: OpenAIProvider) -> None:
    long = [ChatMessage(role="user", content="word " * 3000)]
    with pytest.raises(ProviderError) as err:
        served.complete(long, max_tokens=4, temperature=0.0)
    assert err.value.status == 400 and "context" in str(err.value)


# --- error mapping against a tiny misbehaving server ------------------------------------------


class _Misbehaving(BaseHTTPRequestHandler):
    """Routes on the first path segment: /<case>/v1/chat/completions."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        case = self.path.split("/")[1]
        if case == "unauthorized":  # echoes the key back, as a careless server might
            auth = self.headers.get("Authorization", "")
            body = {"error": {"message": f"Invalid key in '{auth}'", "code": "invalid_api_key"}}
            self._send(401, json.dumps(body))
        elif case == "boom":
            self._send(500, "internal explosion")
        elif case == "garbage":
            self._send(200, "{not json")
        elif case == "slow":
            time.sleep(2)
            self._send(200, "{}")
        elif case == "garbage-stream":
            self._send(200, 'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: {oops\n\n')
        elif case == "no-usage-stream":
            events = [
                {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]},
                {"choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]},
                {"choices": [{"delta": {"content": " there"}, "finish_reason": None}]},
                {"choices": [{"delta": {}, "finish_reason": "stop"}]},
            ]
            sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(200, ": keep-alive\n\n" + sse)

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def bad_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _provider(base_url: str, timeout: float = 10.0) -> OpenAIProvider:
    return OpenAIProvider("gpt-test", base_url=base_url, api_key=API_KEY, timeout=timeout)


def _errors(provider: OpenAIProvider) -> list[ProviderError]:
    """The error from complete and from stream, each checked never to leak the key."""
    errors = []
    for call in (provider.complete, lambda *a, **kw: list(provider.stream(*a, **kw))):
        with pytest.raises(ProviderError) as err:
            call(PROMPT, max_tokens=4, temperature=0.0)
        assert API_KEY not in str(err.value) and API_KEY not in repr(err.value)
        assert err.value.provider == "openai"
        errors.append(err.value)
    assert API_KEY not in repr(provider)
    return errors


def test_unauthorized_maps_status_and_hides_key(bad_server: str) -> None:
    for error in _errors(_provider(f"{bad_server}/unauthorized/v1")):
        assert error.status == 401
        assert "Invalid key" in str(error) and "***" in str(error)


def test_server_error_keeps_body_text(bad_server: str) -> None:
    for error in _errors(_provider(f"{bad_server}/boom/v1")):
        assert error.status == 500 and "internal explosion" in str(error)


def test_malformed_json(bad_server: str) -> None:
    provider = _provider(f"{bad_server}/garbage/v1")
    with pytest.raises(ProviderError, match="malformed JSON") as err:
        provider.complete(PROMPT, max_tokens=4, temperature=0.0)
    assert err.value.status == 200

    stream = _provider(f"{bad_server}/garbage-stream/v1").stream(
        PROMPT, max_tokens=4, temperature=0.0
    )
    assert next(stream).delta == "hi"
    with pytest.raises(ProviderError, match="malformed JSON"):
        next(stream)


def test_connection_refused_names_base_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    for error in _errors(_provider(base_url)):
        assert error.status is None
        assert base_url in str(error) and "could not connect" in str(error)


def test_timeout_names_base_url(bad_server: str) -> None:
    provider = _provider(f"{bad_server}/slow/v1", timeout=0.3)
    with pytest.raises(ProviderError, match="timed out") as err:
        provider.complete(PROMPT, max_tokens=4, temperature=0.0)
    assert err.value.status is None and f"{bad_server}/slow/v1" in str(err.value)


def test_stream_without_server_usage_is_estimated(bad_server: str) -> None:
    chunks = list(
        _provider(f"{bad_server}/no-usage-stream/v1").stream(PROMPT, max_tokens=4, temperature=0)
    )
    assert [c.delta for c in chunks[:-1]] == ["Hello", " there"]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 2  # one per delta
    chars = sum(len(m.content) for m in PROMPT)
    assert chunks[-1].usage.prompt_tokens == -(-chars // 4)
