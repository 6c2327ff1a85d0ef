"""Record and replay: real calls through the in-process SmolLM2 (and a real llama.cpp server
with a fake API key) are recorded into a cassette, then replayed by a provider that holds no
model at all."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from llm_server import free_port

from ragline.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
)
from ragline.llm.chain import ChainMember, ModelChain
from ragline.llm.providers.openai import OpenAIProvider
from ragline.llm.wrappers.base import identity
from ragline.llm.wrappers.replay import (
    Cassette,
    CassetteMiss,
    Recording,
    RecordingProvider,
    ReplayProvider,
)

FAKE_KEY = "sk-ragline-test-0123456789abcdef"


def ask(question: str, **params) -> ChatRequest:
    messages = [ChatMessage(role="system", content="Answer briefly."), ChatMessage(role="user", content=question)]
    return ChatRequest(messages=messages, prompt_version="answer@abc123", **{"max_tokens": 8, **params})


def offline(cassette_path) -> ReplayProvider:
    """A replayer over the cassette as stored on disk, provably holding no model."""
    replay = ReplayProvider(Cassette.load(cassette_path))
    assert not any(isinstance(value, LLMProvider) for value in vars(replay).values())
    return replay


def test_replayed_run_is_byte_identical_with_no_model_call(tmp_path, local_llm) -> None:
    path = tmp_path / "run.jsonl"
    recorder = RecordingProvider(local_llm, Cassette.create(path))
    completed = recorder.complete(ask("Name a colour."))
    streamed = list(recorder.stream(ask("Name a fruit.")))
    assert completed.text and len(streamed) > 2

    replay = offline(path)
    assert replay.identity == identity(local_llm) and replay.model == local_llm.model
    again = replay.complete(ask("Name a colour."))
    assert again == completed and again.model_dump_json() == completed.model_dump_json()
    assert list(replay.stream(ask("Name a fruit."))) == streamed  # same chunking, same final chunk


def test_async_calls_record_and_replay(tmp_path, local_llm) -> None:
    path = tmp_path / "run.jsonl"
    recorder = RecordingProvider(local_llm, Cassette.create(path))

    async def run(provider: LLMProvider) -> tuple[Completion, list]:
        return await provider.acomplete(ask("Name a colour.")), [
            c async for c in provider.astream(ask("Name a fruit."))
        ]

    recorded = asyncio.run(run(recorder))
    assert asyncio.run(run(offline(path))) == recorded


def test_identical_requests_replay_in_recorded_order(tmp_path, local_llm) -> None:
    path = tmp_path / "run.jsonl"
    recorder = RecordingProvider(local_llm, Cassette.create(path))
    same = ask("Name an animal.")
    completed = recorder.complete(same)  # first: one completion
    streamed = list(recorder.stream(same))  # second, same key: many chunks
    warm = ask("Name a city.", temperature=1.5, max_tokens=12)
    sampled = [recorder.complete(warm).text for _ in range(3)]

    replay = offline(path)
    first, second = list(replay.stream(same)), list(replay.stream(same))
    assert [c.delta for c in first[:-1]] == [completed.text]  # the completion, split
    assert first[-1].usage == completed.usage
    assert second == streamed
    assert [replay.complete(warm).text for _ in range(3)] == sampled


def test_complete_of_a_stream_assembles_it(tmp_path, local_llm) -> None:
    path = tmp_path / "run.jsonl"
    streamed = list(RecordingProvider(local_llm, Cassette.create(path)).stream(ask("Name a fruit.")))
    completion = offline(path).complete(ask("Name a fruit."))
    assert completion.text == "".join(c.delta for c in streamed)
    assert (completion.usage, completion.finish_reason) == (streamed[-1].usage, streamed[-1].finish_reason)


def test_a_miss_fails_loudly_and_the_chain_does_not_fall_back(tmp_path, local_llm) -> None:
    path = tmp_path / "run.jsonl"
    RecordingProvider(local_llm, Cassette.create(path)).complete(ask("Name a colour."))
    replay = offline(path)
    asked = ask("What is   the capital of\nFrance, the country in western Europe? Answer in one word.")
    with pytest.raises(CassetteMiss) as missed:
        replay.complete(asked)
    message = str(missed.value)
    assert missed.value.kind == "bad_request"
    assert asked.key(model=replay.identity) in message
    assert "answer@abc123" in message and str(path) in message and "never recorded" in message
    assert "'What is the capital of France, the country in western Europ…'" in message  # whitespace folded, cut

    replay.complete(ask("Name a colour."))
    with pytest.raises(CassetteMiss, match="all 1 recordings of it were already replayed"):
        replay.complete(ask("Name a colour."))

    chain = ModelChain([ChainMember(offline(path)), ChainMember(local_llm)])
    chain.complete(ask("Name a colour."))
    with pytest.raises(CassetteMiss):
        chain.complete(ask("Name a number."))  # a miss is final: SmolLM2 is never asked


def test_no_api_key_in_the_cassette_and_failures_replay(tmp_path, llama_server_url) -> None:
    path = tmp_path / "run.jsonl"
    cassette = Cassette.create(path)
    served = RecordingProvider(OpenAIProvider("smollm2", base_url=llama_server_url, api_key=FAKE_KEY), cassette)
    completed = served.complete(ask("Name a colour."))
    streamed = list(served.stream(ask("Name a fruit.")))
    down = OpenAIProvider("smollm2", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=FAKE_KEY, name="down")
    with pytest.raises(ProviderError) as refused:
        RecordingProvider(down, cassette).complete(ask("Name a colour."))

    text = path.read_text()
    assert FAKE_KEY not in text and "Bearer" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(r["call"], r["identity"]) for r in lines] == [
        ("complete", "openai/smollm2"), ("stream", "openai/smollm2"), ("complete", "down/smollm2"),
    ]  # fmt: skip
    assert lines[0]["request"]["prompt_version"] == "answer@abc123"

    loaded = Cassette.load(path)
    with pytest.raises(ValueError, match="pass identity="):
        ReplayProvider(loaded)
    replay = ReplayProvider(loaded, identity="openai/smollm2")
    assert replay.complete(ask("Name a colour.")) == completed
    assert list(replay.stream(ask("Name a fruit."))) == streamed
    with pytest.raises(ProviderError) as replayed:
        list(ReplayProvider(loaded, identity="down/smollm2").stream(ask("Name a colour.")))
    assert (replayed.value.kind, str(replayed.value)) == (refused.value.kind, str(refused.value))


def test_an_abandoned_stream_is_not_recorded(tmp_path, local_llm) -> None:
    cassette = Cassette.create(tmp_path / "run.jsonl")
    stream = RecordingProvider(local_llm, cassette).stream(ask("Name a fruit.", max_tokens=12))
    next(stream)
    stream.close()
    assert cassette.recordings == [] and (tmp_path / "run.jsonl").read_text() == ""


def test_concurrent_identical_calls_each_get_one_recording(tmp_path) -> None:
    request = ask("Name a colour.")
    key = request.key(model="fake/m")
    recordings = [
        Recording(key=key, identity="fake/m", model="m", call="complete", request=request,
                  completion=Completion(text=str(n), model="m"))
        for n in range(40)
    ]  # fmt: skip
    replay = ReplayProvider(Cassette(tmp_path / "unused.jsonl", recordings))
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda _: replay.complete(request).text, range(20)))

    async def gathered() -> list[str]:
        return [c.text for c in await asyncio.gather(*(replay.acomplete(request) for _ in range(20)))]

    served = threaded + asyncio.run(gathered())
    assert sorted(served, key=int) == [str(n) for n in range(40)]  # each recording exactly once
    with pytest.raises(CassetteMiss):
        replay.complete(request)


def test_text_with_unicode_line_separators_round_trips(tmp_path) -> None:
    """JSON keeps U+2028, U+2029 and U+0085 raw; a reader that split lines at them (as
    str.splitlines does) tore a PubMedQA recording in two."""
    from ragline.llm.fake import FakeProvider

    text = "Renal PAN\u2028can occur.\u2029 Rarely\x85 so."
    path = tmp_path / "run.jsonl"
    recorder = RecordingProvider(FakeProvider([text]), Cassette.create(path))
    assert recorder.complete(ask("Where?")).text == text
    replay = ReplayProvider(Cassette.load(path))
    assert replay.complete(ask("Where?")).text == text


def test_cli_query_record_then_replay_offline(tmp_path, samples_store, llama_server_url):
    """`ragline query --record` against a real server, then `--replay` with the server
    unreachable: the same answer, field for field (but the trace id), and a miss fails loudly."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    store = samples_store
    cassette = tmp_path / "run.jsonl"
    question = "How many days of paid leave do new employees get?"

    def cli(*args, base_url=llama_server_url):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGLINE_LLM__PROVIDER": "openai", "RAGLINE_LLM__MODEL": "smollm2",
               "RAGLINE_LLM__BASE_URL": base_url, "RAGLINE_LLM__MAX_TOKENS": "16"}  # fmt: skip
        return subprocess.run(
            [sys.executable, "-m", "ragline", "query", *args, "--store", str(store), "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=600, env=env,
        )  # fmt: skip

    recorded = cli(question, "--record", str(cassette))
    assert recorded.returncode == 0, recorded.stderr
    offline = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: any model call would fail
    replayed = cli(question, "--replay", str(cassette), base_url=offline)
    assert replayed.returncode == 0, replayed.stderr
    first, again = json.loads(recorded.stdout), json.loads(replayed.stdout)
    assert first.pop("trace_id") != again.pop("trace_id")
    assert first == again and first["answer"]

    missed = cli("A question never recorded?", "--replay", str(cassette), base_url=offline)
    assert missed.returncode == 1 and "cassette" in missed.stderr and "A question never recorded" in missed.stderr
