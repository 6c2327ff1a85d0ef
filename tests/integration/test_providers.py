"""In-process llama.cpp, and the OpenAI client against a real llama_cpp.server; failures of
every HTTP protocol are in test_provider_protocols.py. Nothing of ours is mocked.

Only what is deterministic on any CPU is asserted: the shape of answers and streams, usage
bounds, exact prompt-token counts. Never that two requests give the same text: llama.cpp
reuses the cached prompt prefix of the previous request (so the second of two identical
requests evaluates fewer tokens in a different batch), which changes the arithmetic and, on
some CPUs, the greedy pick of a 135M model."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from protocol_servers import API_KEY, TOO_LONG, question

from ragline.llm.base import LLMProvider, ProviderError, StreamChunk
from ragline.llm.providers.llamacpp import LlamaCppProvider
from ragline.llm.providers.openai import OpenAIProvider

REQUEST = question(max_tokens=16)


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


def _check_completion(done, provider: LLMProvider, max_tokens: int = 16) -> None:
    assert done.text.strip() and done.provider == provider.name
    assert done.usage.prompt_tokens > 0
    assert 0 < done.usage.completion_tokens <= max_tokens
    assert done.finish_reason in ("stop", "length")


def _check_complete_and_stream(provider: LLMProvider) -> None:
    done = provider.complete(REQUEST)
    _check_completion(done, provider)
    _check_stream(list(provider.stream(REQUEST)), 16)


async def _check_async(provider: LLMProvider) -> None:
    _check_completion(await provider.acomplete(REQUEST), provider)
    _check_stream([c async for c in provider.astream(REQUEST)], 16)
    await provider.aclose()


# --- in-process llama.cpp ---------------------------------------------------------------------


def test_llamacpp_complete_and_stream(local_llm: LlamaCppProvider) -> None:
    assert local_llm.model == "SmolLM2-135M-Instruct.Q4_1"
    assert local_llm.context_window == local_llm.n_ctx == 2048
    _check_complete_and_stream(local_llm)
    _check_completion(local_llm.complete(REQUEST, timeout=0.001), local_llm)  # documented: timeout is ignored


def test_llamacpp_counts_prompt_tokens_exactly(local_llm: LlamaCppProvider) -> None:
    done = local_llm.complete(REQUEST.model_copy(update={"max_tokens": 8}))
    last = list(local_llm.stream(REQUEST.model_copy(update={"max_tokens": 8})))[-1]
    assert last.usage.prompt_tokens == done.usage.prompt_tokens == local_llm.count_prompt_tokens(REQUEST)
    assert 0 < last.usage.completion_tokens <= 8 and 0 < done.usage.completion_tokens <= 8


def test_llamacpp_async_callers_are_serialised(local_llm: LlamaCppProvider) -> None:
    """Many tasks share one llama.cpp context: the lock makes them take turns, so each gets a
    whole, well-formed answer of its own (an unguarded context crashes or mixes sequences)."""
    request = REQUEST.model_copy(update={"max_tokens": 6})
    prompt_tokens = local_llm.count_prompt_tokens(request)

    async def run() -> tuple[list, list]:
        async def streamed() -> list[StreamChunk]:
            return [c async for c in local_llm.astream(request)]

        completed = await asyncio.gather(*(local_llm.acomplete(request) for _ in range(3)))
        streams = await asyncio.gather(*(streamed() for _ in range(3)))
        mixed = await asyncio.gather(local_llm.acomplete(request), streamed(), local_llm.acomplete(request), streamed())
        return [*completed, mixed[0], mixed[2]], [*streams, mixed[1], mixed[3]]

    completed, streams = asyncio.run(run())
    for done in completed:
        _check_completion(done, local_llm, max_tokens=6)
        assert done.usage.prompt_tokens == prompt_tokens
    for chunks in streams:
        _check_stream(chunks, 6)
        assert chunks[-1].usage.prompt_tokens == prompt_tokens


def test_llamacpp_prompt_longer_than_context() -> None:
    provider = LlamaCppProvider(n_ctx=64)
    assert provider.n_ctx == provider.context_window == 256  # llama.cpp's padding, made explicit
    try:
        with pytest.raises(ProviderError, match="context") as err:
            provider.complete(TOO_LONG)
        assert err.value.status is None and err.value.provider == "llamacpp"
        assert err.value.kind == "context_length"
        with pytest.raises(ProviderError, match="context") as err:
            list(provider.stream(TOO_LONG))
        assert err.value.kind == "context_length"
    finally:
        provider.close()


def test_missing_model_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        LlamaCppProvider(str(tmp_path / "nope.gguf"))


# --- OpenAI wire format against a real llama_cpp.server ---------------------------------------


@pytest.fixture(scope="module")
def server_url(llama_server_url: str) -> str:
    return llama_server_url


def _served(server_url: str) -> OpenAIProvider:
    return OpenAIProvider("smollm2", base_url=server_url, api_key=API_KEY, timeout=60)


def test_openai_against_llama_server_sync_and_async(server_url: str) -> None:
    provider = _served(server_url)
    _check_complete_and_stream(provider)
    provider.close()
    asyncio.run(_check_async(_served(server_url)))


def test_openai_context_length_from_a_real_server(server_url: str) -> None:
    provider = _served(server_url)
    with pytest.raises(ProviderError) as err:
        provider.complete(TOO_LONG)
    assert err.value.status == 400 and err.value.kind == "context_length"
    # llama_cpp.server checks the prompt only once its stream has begun: 200, then an empty
    # body. With no end marker that is a broken stream, never an empty answer.
    with pytest.raises(ProviderError, match="ended before") as err:
        list(provider.stream(TOO_LONG))
    assert err.value.kind == "connection" and err.value.partial_text == ""
    provider.close()


# --- OpenAI stream quirks of real servers -----------------------------------------------------


class _Quirky(BaseHTTPRequestHandler):
    """Routes on the first path segment: /<case>/v1/chat/completions."""

    STREAMS = {
        "no-usage-stream": ": keep-alive\n\n" + "".join(
            f"data: {json.dumps(e)}\n\n"
            for e in [
                {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]},
                {"choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]},
                {"choices": [{"delta": {"content": " there"}, "finish_reason": None}]},
                {"choices": [{"delta": {}, "finish_reason": "stop"}]},
            ]
        ) + "data: [DONE]\n\n",
        "garbage-stream": 'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: {oops\n\n',
        "json-error-stream": json.dumps({"error": {"message": "model is loading"}}) + "\n",
    }  # fmt: skip

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = self.STREAMS[self.path.split("/")[1]].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def quirky() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quirky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _quirky(base_url: str, case: str) -> OpenAIProvider:
    return OpenAIProvider("gpt-test", base_url=f"{base_url}/{case}/v1", api_key=API_KEY)


def test_stream_without_server_usage_is_estimated(quirky: str) -> None:
    chunks = list(_quirky(quirky, "no-usage-stream").stream(REQUEST))
    assert [c.delta for c in chunks[:-1]] == ["Hello", " there"]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 2  # one per delta
    assert chunks[-1].usage.prompt_tokens == -(-REQUEST.prompt_chars() // 4)


def test_malformed_event_mid_stream_keeps_partial_text(quirky: str) -> None:
    stream = _quirky(quirky, "garbage-stream").stream(REQUEST)
    assert next(stream).delta == "hi"
    with pytest.raises(ProviderError, match="malformed JSON") as err:
        next(stream)
    assert err.value.kind == "malformed" and err.value.partial_text == "hi"


def test_bare_json_error_instead_of_a_stream(quirky: str) -> None:
    with pytest.raises(ProviderError, match="model is loading") as err:
        list(_quirky(quirky, "json-error-stream").stream(REQUEST))
    assert err.value.kind == "server"
