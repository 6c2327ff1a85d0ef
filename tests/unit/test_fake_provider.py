"""The scripted `FakeProvider` itself (`ragline.llm.fake`): what each outcome does on
`complete`, `stream` and their async defaults, usage counting, the context window, and the
record of requests the tests elsewhere rely on."""

from __future__ import annotations

import asyncio
import threading
import types

import pytest

import ragline.llm.fake as fake_module
from ragline.llm.base import ChatMessage, ChatRequest, ProviderError
from ragline.llm.fake import CutStream, Fail, FakeProvider, Reply, pieces
from ragline.llm.pricing import worst_case_usage
from ragline.models import Usage


def request(text: str = "Say hello.", *, max_tokens: int = 16, system: str | None = None) -> ChatRequest:
    messages = [ChatMessage(role="system", content=system)] if system else []
    return ChatRequest(messages=[*messages, ChatMessage(role="user", content=text)], max_tokens=max_tokens)


def streamed(provider: FakeProvider, req: ChatRequest) -> tuple[list[str], object]:
    chunks = list(provider.stream(req))
    assert all(c.delta for c in chunks[:-1]) and not chunks[-1].delta
    return [c.delta for c in chunks[:-1]], chunks[-1]


def raised(call) -> ProviderError:
    with pytest.raises(ProviderError) as failed:
        call()
    return failed.value


async def astreamed(provider: FakeProvider, req: ChatRequest, received: list[str]):
    async for chunk in provider.astream(req):
        received.append(chunk.delta)
    return chunk


def test_script_is_played_in_order_and_the_last_outcome_repeats() -> None:
    provider = FakeProvider(["first", "second"])
    assert [provider.complete(request()).text for _ in range(4)] == ["first", "second", "second", "second"]
    assert provider.calls == 4


def test_an_empty_script_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one outcome"):
        FakeProvider([])


def test_default_script_answers_ok() -> None:
    assert FakeProvider().complete(request()).text == "ok"


def test_callable_script_sees_each_request() -> None:
    provider = FakeProvider(lambda req: f"echo: {req.messages[-1].content}")
    assert provider.complete(request("one")).text == "echo: one"
    assert provider.complete(request("two")).text == "echo: two"


def test_completion_carries_name_model_usage_and_finish_reason() -> None:
    provider = FakeProvider([Reply("filtered out", finish_reason="content_filter")], name="n", model="m")
    done = provider.complete(request("three words here", system="be brief"))
    assert (done.text, done.finish_reason, done.provider, done.model) == ("filtered out", "content_filter", "n", "m")
    assert done.usage == Usage(prompt_tokens=5, completion_tokens=2)  # words of every message; answer pieces
    assert provider.count_prompt_tokens(request("a b c")) == 3


def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    provider = FakeProvider(["one two three four five"])
    done = provider.complete(request(max_tokens=3))
    assert done.text.split() == ["one", "two", "three"] and done.finish_reason == "length"
    assert done.usage.completion_tokens == 3
    deltas, final = streamed(provider, request(max_tokens=3))
    assert "".join(deltas) == done.text and final.finish_reason == "length"
    assert provider.complete(request(max_tokens=5)).finish_reason == "stop"  # exactly fits


def test_stream_pieces_join_to_the_completion_text() -> None:
    text = "The answer is 42 [1].\nSecond line."
    provider = FakeProvider([text], name="n", model="m")
    deltas, final = streamed(provider, request())
    assert deltas == pieces(text) and "".join(deltas) == text == provider.complete(request()).text
    assert final.usage == Usage(prompt_tokens=2, completion_tokens=len(deltas))
    assert (final.finish_reason, final.model, final.provider) == ("stop", "m", "n")


def test_pieces_are_words_with_their_trailing_space() -> None:
    assert pieces("a  b\nc") == ["a  ", "b\n", "c"]
    assert pieces("") == []


def test_cut_stream_delivers_its_first_pieces_then_drops() -> None:
    provider = FakeProvider([CutStream("one two three four", after=2)], name="n")
    received: list[str] = []
    error = raised(lambda: received.extend(c.delta for c in provider.stream(request())))
    assert received == ["one ", "two "]
    assert (error.kind, error.status, error.partial_text, error.provider) == ("connection", None, "one two ", "n")


def test_cut_stream_on_complete_is_a_connection_error_with_no_text() -> None:
    error = raised(lambda: FakeProvider([CutStream("one two", after=1)]).complete(request()))
    assert (error.kind, error.partial_text) == ("connection", "")


@pytest.mark.parametrize(
    ("fail", "status"),
    [
        (Fail("rate_limit", status=429, retry_after=1.5), 429),
        (Fail("server", status=503), 503),
        (Fail("auth", status=401, message="bad key"), 401),
        (Fail("timeout"), None),
        (Fail("malformed"), None),
    ],
)
def test_fail_raises_its_kind_status_and_retry_after(fail: Fail, status: int | None) -> None:
    provider = FakeProvider([fail], name="flaky")
    for call in (lambda: provider.complete(request()), lambda: list(provider.stream(request()))):
        error = raised(call)
        assert (error.kind, error.status, error.retry_after) == (fail.kind, status, fail.retry_after)
        assert error.provider == "flaky" and str(error) == f"flaky: {fail.message}" and error.partial_text == ""
    assert provider.calls == 2


def test_context_window_counts_prompt_words_and_max_tokens() -> None:
    provider = FakeProvider(["fits"], context_window=10)
    assert provider.complete(request("two words", max_tokens=8)).text == "fits"  # 2 + 8 = 10: fits
    for call in (provider.complete, lambda req: list(provider.stream(req))):
        error = raised(lambda call=call: call(request("three words now", max_tokens=8)))
        assert (error.kind, error.status) == ("context_length", 400) and "context window of 10" in str(error)
    assert provider.calls == 3  # refused requests are recorded too


def test_every_request_is_recorded_in_order() -> None:
    provider = FakeProvider(["a", "b"])
    first, second = request("first"), request("second", max_tokens=3)
    provider.complete(first)
    list(provider.stream(second))
    assert provider.requests == [first, second] and provider.requests[1].max_tokens == 3


def test_concurrent_calls_each_take_their_own_outcome() -> None:
    provider = FakeProvider([str(i) for i in range(8)])
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(provider.complete(request()).text)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [str(i) for i in range(8)] and provider.calls == 8


def test_delay_sleeps_before_each_answer_but_not_before_a_context_error(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(fake_module, "time", types.SimpleNamespace(sleep=slept.append))
    provider = FakeProvider(["slow", Fail("server")], delay=0.25, context_window=20)
    provider.complete(request())
    raised(lambda: provider.complete(request()))
    raised(lambda: provider.complete(request("x " * 30)))
    assert slept == [0.25, 0.25]


def test_worst_case_usage_uses_the_exact_prompt_count() -> None:
    provider = FakeProvider()
    assert worst_case_usage(provider, request("four words in prompt", max_tokens=7)) == Usage(
        prompt_tokens=4, completion_tokens=7
    )


def test_async_methods_use_the_base_class_defaults() -> None:
    answer, dropped = "async answer here", CutStream("a b c", after=1)
    provider = FakeProvider([answer, answer, Fail("server", status=502), dropped])

    async def run():
        done = await provider.acomplete(request())
        received: list[str] = []
        final = await astreamed(provider, request(max_tokens=2), received)
        with pytest.raises(ProviderError) as failed:
            await provider.acomplete(request())
        with pytest.raises(ProviderError) as cut:
            await astreamed(provider, request(), [])
        await provider.aclose()
        return done, received, final, failed.value, cut.value

    done, received, final, failed, cut = asyncio.run(run())
    assert done.text == "async answer here" and done.usage.completion_tokens == 3
    assert "".join(received) == "async answer " and final.finish_reason == "length"
    assert (failed.kind, failed.status) == ("server", 502)
    assert (cut.kind, cut.partial_text) == ("connection", "a ")
    assert provider.calls == 4 and provider.closed


def test_a_refused_oversized_prompt_uses_no_script_outcome() -> None:
    provider = FakeProvider(["first", "second"], context_window=8)
    oversized = ChatRequest(messages=[ChatMessage(role="user", content="word " * 10)], max_tokens=4)
    with pytest.raises(ProviderError):
        provider.complete(oversized)
    assert provider.complete(ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=4)).text == "first"
    assert provider.calls == 2
