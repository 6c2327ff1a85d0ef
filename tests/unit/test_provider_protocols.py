"""Every HTTP wire protocol (OpenAI chat completions, Anthropic Messages, Ollama native), sync
and async, against protocol-faithful servers on 127.0.0.1: answers, streaming, usage, and each
failure mapped to the ErrorKind the reliability wrappers act on. The clients under test are
ours, unmocked; the servers answer from a scripted `FakeProvider`, so every way of asking
(complete, stream, sync, async) must give exactly the same text. A real model would not: a
llama.cpp context reuses the previous request's prompt prefix, which changes the arithmetic
and so a greedy pick. Real models are exercised in test_providers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from llm_server import free_port
from protocol_servers import (
    API_KEY,
    RETRY_AFTER,
    TOO_LONG,
    AnthropicHandler,
    OllamaHandler,
    OpenAIHandler,
    ProtocolServer,
    question,
)

from ragline.llm.base import ChatRequest, Completion, ProviderError, StreamChunk
from ragline.llm.fake import FakeProvider
from ragline.llm.providers.anthropic import AnthropicProvider
from ragline.llm.providers.http_common import HttpProvider
from ragline.llm.providers.ollama import OllamaProvider
from ragline.llm.providers.openai import OpenAIProvider

REQUEST = question(max_tokens=12)
ANSWER = "The capital of France is Paris, a city on the river Seine, known for its museums."


def backend() -> FakeProvider:
    """What the protocol servers answer with: a fixed text, cut at max_tokens; a prompt
    longer than a 2,048-token window is a context-length error."""
    return FakeProvider([ANSWER], name="backend", model="smollm2", context_window=2048)

PROTOCOLS = {
    "openai": (OpenAIProvider, OpenAIHandler),
    "anthropic": (AnthropicProvider, AnthropicHandler),
    "ollama": (OllamaProvider, OllamaHandler),
}
Make = Callable[..., HttpProvider]


@pytest.fixture(scope="module", params=list(PROTOCOLS))
def make(request) -> Iterator[Make]:
    """Builds a client of one protocol for a server case; the server runs for the module."""
    provider_cls, handler = PROTOCOLS[request.param]
    with ProtocolServer(handler, backend(), API_KEY) as server:

        def build(case: str = "ok", *, timeout: float = 30.0, api_key: str = API_KEY):
            url = server.base_url(case)
            return provider_cls("smollm2", base_url=url, api_key=api_key, timeout=timeout)

        yield build


def _four_ways(
    make: Make, case: str, request: ChatRequest = REQUEST, *, streams_only: bool = False,
    client: dict | None = None, **call_kw,
) -> list:
    """complete, stream, acomplete and astream (or only the two streams) on fresh clients,
    sync ones first: each result, or the ProviderError it raised."""
    sync = make(case, **(client or {}))
    ways = [lambda: list(sync.stream(request, **call_kw))]
    if not streams_only:
        ways.insert(0, lambda: sync.complete(request, **call_kw))
    results = [_outcome(way) for way in ways]
    sync.close()

    async def run_async() -> list:
        provider = make(case, **(client or {}))
        ways = [lambda: _collect(provider.astream(request, **call_kw))]
        if not streams_only:
            ways.insert(0, lambda: provider.acomplete(request, **call_kw))
        out = []
        for way in ways:
            try:
                out.append(await way())
            except ProviderError as exc:
                out.append(exc)
        await provider.aclose()
        return out

    return results + asyncio.run(run_async())


def _outcome(call: Callable) -> object:
    try:
        return call()
    except ProviderError as exc:
        return exc


async def _collect(stream) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def _errors(results: list) -> list[ProviderError]:
    assert all(isinstance(r, ProviderError) for r in results), results
    for error in results:
        assert API_KEY not in str(error) and API_KEY not in repr(error)
    return results


def _text(chunks: list[StreamChunk]) -> str:
    *deltas, last = chunks
    assert deltas and all(c.delta and c.usage is None for c in deltas)
    assert last.delta == "" and last.usage is not None
    return "".join(c.delta for c in deltas)


# --- answers ----------------------------------------------------------------------------------


def test_complete_and_stream_sync_and_async(make: Make) -> None:
    done, streamed, adone, astreamed = _four_ways(make, "ok")
    expected = backend().complete(REQUEST)  # what the server's backend says
    for completion in (done, adone):
        assert isinstance(completion, Completion), completion
        assert completion.text == expected.text and completion.text.strip()
        assert completion.usage == expected.usage  # the server's counts, passed through
        assert completion.finish_reason == expected.finish_reason
    for chunks in (streamed, astreamed):
        assert isinstance(chunks, list), chunks
        assert _text(chunks) == expected.text
        assert chunks[-1].usage.prompt_tokens == expected.usage.prompt_tokens
        assert 0 < chunks[-1].usage.completion_tokens <= REQUEST.max_tokens
        assert chunks[-1].finish_reason == expected.finish_reason == "length"


def test_context_window_is_configurable() -> None:
    provider = AnthropicProvider("claude", api_key=API_KEY, context_window=200_000)
    assert provider.context_window == 200_000 and provider.count_prompt_tokens(REQUEST) is None
    assert API_KEY not in repr(provider)
    provider.close()


# --- status errors, each protocol's error body ------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [("rate_limit", 429, "rate_limit"), ("boom", 500, "server"), ("overloaded", 529, "server")],
)
def test_status_errors(make: Make, case: str, status: int, kind: str) -> None:
    for error in _errors(_four_ways(make, case)):
        assert (error.status, error.kind) == (status, kind)
        assert f"injected {case}" in str(error) and error.partial_text == ""
        assert error.retry_after == (RETRY_AFTER if status == 429 else None)


def test_unauthorized_is_auth_and_never_leaks_the_key(make: Make) -> None:
    wrong = API_KEY + "-wrong"  # the server echoes the presented key back
    for error in _errors(_four_ways(make, "ok", client={"api_key": wrong})):
        assert (error.status, error.kind) == (401, "auth")
        assert "***" in str(error) and wrong not in str(error)


def test_prompt_longer_than_context_is_context_length(make: Make) -> None:
    for error in _errors(_four_ways(make, "ok", TOO_LONG)):
        assert (error.status, error.kind) == (400, "context_length")
        assert "context window" in str(error)


def test_malformed_json(make: Make) -> None:
    for error in _errors(_four_ways(make, "garbage")):
        assert error.kind == "malformed" and "malformed JSON" in str(error)


# --- transport failures -----------------------------------------------------------------------


def test_connection_refused_names_base_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    for provider_cls, _ in PROTOCOLS.values():
        def make(case: str, **kw) -> HttpProvider:
            return provider_cls("m", base_url=base_url, api_key=API_KEY, **kw)  # Anthropic sends nothing without one

        for error in _errors(_four_ways(make, "-")):
            assert (error.status, error.kind) == (None, "connection")
            assert "could not connect" in str(error) and base_url in str(error)


def test_per_call_timeout_overrides_the_client_default(make: Make) -> None:
    for error in _errors(_four_ways(make, "slow", timeout=0.3)):  # the client default is 30 s
        assert (error.status, error.kind) == (None, "timeout")
        assert "timed out" in str(error)


# --- streams that break after the first token -------------------------------------------------


def _stream_failures(make: Make, case: str, **kw) -> list[ProviderError]:
    """stream and astream of one case: both must fail after delivering some text."""
    return _errors(_four_ways(make, case, streams_only=True, **kw))


@pytest.mark.parametrize("case", ["cut", "reset"])
def test_stream_cut_midway_is_connection_with_partial_text(
    make: Make, case: str
) -> None:
    """cut: the server closes a close-delimited body early (no end marker); reset: it closes
    in the middle of a chunked body (httpx's RemoteProtocolError)."""
    full = backend().complete(REQUEST).text
    for error in _stream_failures(make, case):
        assert (error.status, error.kind) == (None, "connection"), error
        assert error.partial_text and full.startswith(error.partial_text)
        assert error.partial_text != full


def test_stream_stalls_past_timeout_with_partial_text(make: Make) -> None:
    """The timeout bounds the wait for each next piece: the server sends two pieces at once,
    then falls silent for longer than the 1 s timeout."""
    for error in _stream_failures(make, "stall", timeout=1.0):
        assert error.kind == "timeout" and error.partial_text


def test_error_event_inside_stream_is_server_with_partial_text(make: Make) -> None:
    for error in _stream_failures(make, "error-event"):
        assert error.kind == "server" and "stream error" in str(error) and error.partial_text
