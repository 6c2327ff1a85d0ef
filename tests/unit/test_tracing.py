"""Tracing: GenAI spans around model calls, one trace across tasks and threads, SQLite store,
OTLP/HTTP export to a real receiver, redaction, opt-in content, and the `traces` CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otlp_receiver import OtlpReceiver
from typer.testing import CliRunner

from ragline.cli_traces import traces_app
from ragline.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)
from ragline.llm.fake import FakeProvider
from ragline.llm.wrappers.cache import CachedProvider, SqliteResponseCache
from ragline.models import Attempt, Hit, Usage
from ragline.tracing.config import TracingConfig
from ragline.tracing.setup import setup_tracing
from ragline.tracing.spans import ContextThreadPoolExecutor, current_trace_id, record_hits
from ragline.tracing.store import TraceStore

FAKE_KEY = "sk-test-" + "a1B2c3D4e5F6g7H8i9J0"


class Scripted(LLMProvider):
    """A deterministic provider: fixed answer, usage, cost and attempts; can fail mid-stream."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, text: str = "Paris is the capital.", *, fail_after: int | None = None):
        self.text = text
        self.fail_after = fail_after
        self.attempts = [
            Attempt(provider="primary", model="big", outcome="error", error_kind="rate_limit", status=429, latency_ms=3.0),
            Attempt(provider="scripted", model=self.model, outcome="ok", latency_ms=9.5, cost_usd=0.0012),
        ]

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        return Completion(
            text=self.text, model=self.model, usage=Usage(prompt_tokens=12, completion_tokens=5),
            finish_reason="stop", provider=self.name, cost_usd=0.0012, attempts=self.attempts,
        )  # fmt: skip

    def stream(self, request: ChatRequest, *, timeout: float | None = None):
        for i, word in enumerate(self.text.split(" ")):
            if i == self.fail_after:
                raise ProviderError(f"upstream dropped, key {FAKE_KEY}", provider=self.name, status=503)
            yield StreamChunk(delta=word + " ")
        yield StreamChunk(
            usage=Usage(prompt_tokens=12, completion_tokens=5), finish_reason="stop", model=self.model,
            provider=self.name, cost_usd=0.0012, attempts=self.attempts,
        )  # fmt: skip


def request(text: str = "What is the capital of France?", max_tokens: int = 8) -> ChatRequest:
    return ChatRequest(
        messages=[ChatMessage(role="system", content="Answer briefly."), ChatMessage(role="user", content=text)],
        max_tokens=max_tokens, prompt_version="prompt-v1-abc123",
    )  # fmt: skip


@pytest.fixture
def model():
    """A scripted model: spans and their parenting do not depend on what it says."""
    return FakeProvider(["Paris is the capital of France."], name="fake", model="fake-model")


@pytest.fixture
def memory():
    return InMemorySpanExporter()


@pytest.fixture
def tracing(tmp_path, memory):
    tracing = setup_tracing(TracingConfig(), tmp_path, exporters=[memory])
    yield tracing
    tracing.shutdown()


def by_name(memory: InMemorySpanExporter, name: str):
    return [s for s in memory.get_finished_spans() if s.name == name]


def assert_chat_span(span, *, model: str, stream: bool) -> None:
    a = span.attributes
    assert span.name == f"chat {model}"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == model
    assert a["gen_ai.request.max_tokens"] == 8
    assert a["gen_ai.request.temperature"] == 0.0
    assert a["gen_ai.response.model"] == model
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] and a["gen_ai.system"] == a["gen_ai.provider.name"]
    assert a["ragline.prompt.version"] == "prompt-v1-abc123"
    assert a["ragline.cache.hit"] is False and a["ragline.stream"] is stream
    assert span.status.status_code is StatusCode.UNSET


def test_spans_parent_across_gather_and_thread_pool(tracing, memory, model):
    llm = tracing.wrap(model)

    async def fan_out():
        return await asyncio.gather(llm.acomplete(request("Name a colour.")), llm.acomplete(request("Name a fruit.")))

    with tracing.span("query") as root:
        trace_id = current_trace_id()
        assert llm.complete(request()).text
        assert "".join(chunk.delta for chunk in llm.stream(request()))
        asyncio.run(fan_out())
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(llm.complete, request("Name a city.")).result()
        with ThreadPoolExecutor(max_workers=1) as bare:  # the control: a bare pool splits the trace
            stray = bare.submit(current_trace_id).result()

    chats = by_name(memory, f"chat {model.model}")
    assert len(chats) == 5
    for span in chats:
        assert_chat_span(span, model=model.model, stream=span.attributes["ragline.stream"])
        assert f"{span.context.trace_id:032x}" == trace_id
        assert span.parent.span_id == root.get_span_context().span_id
    assert sum(s.attributes["ragline.stream"] for s in chats) == 1
    assert stray is None


def test_async_stream_span_ends_with_stream(tracing, memory, model):
    llm = tracing.wrap(model)

    async def consume():
        with tracing.span("query"):
            return [chunk async for chunk in llm.astream(request())]

    chunks = asyncio.run(consume())
    (chat,) = by_name(memory, f"chat {model.model}")
    assert_chat_span(chat, model=model.model, stream=True)
    assert chat.attributes["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens
    assert chat.attributes["ragline.stream.first_token_ms"] > 0
    assert chat.parent.span_id == by_name(memory, "query")[0].context.span_id


def test_attempts_cost_and_events(tracing, memory):
    tracing.wrap(Scripted()).complete(request())
    (chat,) = memory.get_finished_spans()
    assert chat.attributes["ragline.attempts"] == 2
    assert chat.attributes["ragline.cost_usd"] == pytest.approx(0.0012)
    attempts = [e.attributes for e in chat.events if e.name == "ragline.attempt"]
    assert attempts[0]["ragline.attempt.outcome"] == "error"
    assert attempts[0]["ragline.attempt.error_kind"] == "rate_limit"
    assert attempts[0]["ragline.attempt.status"] == 429
    assert attempts[1]["ragline.attempt.provider"] == "scripted"
    assert attempts[1]["ragline.attempt.latency_ms"] == 9.5


def test_stream_error_and_early_close(tracing, memory):
    with pytest.raises(ProviderError):
        list(tracing.wrap(Scripted(fail_after=2)).stream(request()))
    (failed,) = memory.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "server" and failed.attributes["ragline.error.status"] == 503
    assert failed.attributes["ragline.stream.complete"] is False
    assert any(e.name == "exception" for e in failed.events)
    assert FAKE_KEY not in failed.status.description  # redacted on the way out

    memory.clear()
    stream = tracing.wrap(Scripted()).stream(request())
    next(stream)
    stream.close()
    (closed,) = memory.get_finished_spans()
    assert closed.end_time and closed.status.status_code is StatusCode.UNSET
    assert closed.attributes["ragline.stream.chars"] == len("Paris ")

    async def consume(provider, take: int) -> None:
        stream = tracing.wrap(provider).astream(request())
        async for _ in stream:
            take -= 1
            if take == 0:
                break
        await stream.aclose()

    memory.clear()
    asyncio.run(consume(Scripted(), 1))
    with pytest.raises(ProviderError):
        asyncio.run(consume(Scripted(fail_after=1), 5))
    closed, failed = memory.get_finished_spans()
    assert closed.attributes["ragline.stream.complete"] is False and closed.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["error.type"] == "server"


def test_cache_hit_is_a_span(tracing, memory, tmp_path):
    cache = SqliteResponseCache(tmp_path / "cache.sqlite")
    llm = tracing.wrap(CachedProvider(Scripted(), cache))
    llm.complete(request())
    llm.complete(request())
    miss, hit = memory.get_finished_spans()
    assert miss.attributes["ragline.cache.hit"] is False and miss.attributes["ragline.attempts"] == 2
    assert hit.attributes["ragline.cache.hit"] is True and hit.attributes["ragline.attempts"] == 0
    assert hit.attributes["ragline.cost_usd"] == 0.0
    cache.close()


def test_secrets_are_redacted_everywhere(tmp_path, memory, monkeypatch):
    env_secret = "hunter2-env-secret-value"
    monkeypatch.setenv("ACME_SERVICE_TOKEN", env_secret)
    tracing = setup_tracing(TracingConfig(capture_content=True), tmp_path, exporters=[memory])
    with tracing.span("query", {"http.header": "Bearer abc.def.ghi123456", "api_key": "plain-value"}) as span:
        span.add_event("note", {"detail": f"using {FAKE_KEY} and {env_secret}"})
        tracing.wrap(Scripted()).complete(request(f"my key is {FAKE_KEY}"))
    tracing.shutdown()

    (query,) = by_name(memory, "query")
    assert query.attributes["http.header"] == "***" and query.attributes["api_key"] == "***"
    assert query.events[0].attributes["detail"] == "using *** and ***"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("traces.sqlite*"))  # the WAL too + b"".join(s.to_json().encode() for s in memory.get_finished_spans())
    for secret in (FAKE_KEY, env_secret, "abc.def.ghi123456", "plain-value"):
        assert secret.encode() not in stored
    assert b"my key is ***" in stored  # the prompt is kept (opt-in), minus the key


@pytest.mark.parametrize("capture", [False, True])
def test_prompt_and_completion_text_are_opt_in(tmp_path, memory, capture):
    tracing = setup_tracing(TracingConfig(capture_content=capture), tmp_path, exporters=[memory])
    with tracing.span("query", content={"ragline.query": "secret question"}):
        tracing.wrap(Scripted()).complete(request("secret question"))
        list(tracing.wrap(Scripted()).stream(request("secret question")))
    tracing.shutdown()
    events = {e.name: e.attributes for s in memory.get_finished_spans() for e in s.events}
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("traces.sqlite*"))  # the WAL too
    if capture:
        assert "secret question" in events["gen_ai.content.prompt"]["gen_ai.prompt"]
        assert events["gen_ai.content.completion"]["gen_ai.completion"].strip() == "Paris is the capital."
        assert b"secret question" in stored and b"Paris is the capital." in stored
    else:
        assert not {"gen_ai.content.prompt", "gen_ai.content.completion"} & events.keys()
        assert b"secret question" not in stored and b"Paris is the capital" not in stored


def run_query(tracing) -> str:
    """A query-shaped trace: query > retrieve, rerank, chat."""
    hits = [Hit(document_id=f"doc-{i}.md", chunk_id=f"c{i}", score=1.0 - i / 10, text="t") for i in range(3)]
    with tracing.span("query") as root:
        with tracing.span("retrieve", {"ragline.retrieval.mode": "hybrid"}) as span:
            record_hits(span, hits)
        with tracing.span("rerank", {"ragline.rerank.model": "ms-marco"}) as span:
            record_hits(span, hits[:2], prefix="ragline.rerank")
        tracing.wrap(Scripted()).complete(request())
    return f"{root.get_span_context().trace_id:032x}"


def test_otlp_http_export_to_real_receiver(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "zz-otlp-secret-42")
    with OtlpReceiver() as receiver:
        tracing = setup_tracing(TracingConfig(otlp_endpoint=receiver.url, service_name="ragline-test"), tmp_path)
        trace_id = run_query(tracing)
        with tracing.span("leak", {"note": "zz-otlp-secret-42"}):
            pass
        tracing.force_flush()
        spans = {s["name"]: s for s in receiver.wait_for(5)}
        tracing.shutdown()

    assert set(spans) == {"query", "retrieve", "rerank", "chat scripted-1", "leak"}
    query, chat = spans["query"], spans["chat scripted-1"]
    assert query["parent_span_id"] is None and query["resource"]["service.name"] == "ragline-test"
    for name in ("retrieve", "rerank", "chat scripted-1"):
        assert spans[name]["trace_id"] == trace_id and spans[name]["parent_span_id"] == query["span_id"]
    assert spans["retrieve"]["attributes"]["ragline.retrieval.document_ids"] == ["doc-0.md", "doc-1.md", "doc-2.md"]
    assert spans["retrieve"]["attributes"]["ragline.retrieval.scores"] == pytest.approx([1.0, 0.9, 0.8])
    assert spans["rerank"]["attributes"]["ragline.rerank.document_ids"] == ["doc-0.md", "doc-1.md"]
    a = chat["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "scripted-1"
    assert a["gen_ai.usage.input_tokens"] == 12 and a["gen_ai.usage.output_tokens"] == 5
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["ragline.cost_usd"] == pytest.approx(0.0012)
    assert chat["kind"] == 3  # SPAN_KIND_CLIENT
    assert [e["name"] for e in chat["events"]] == ["ragline.attempt", "ragline.attempt"]
    assert spans["leak"]["attributes"]["note"] == "***"
    assert (tmp_path / "traces.sqlite").is_file()  # the embedded store is written alongside


def test_otlp_credentials_come_from_the_environment_and_never_reach_a_span(tmp_path, monkeypatch):
    """A header named in `otlp_headers_env` is sent with the env var's value, and that value
    is masked in spans even though the variable's name does not look secret."""
    monkeypatch.setenv("TRACE_BACKEND_AUTH", "Basic cGs6c2stbGYtOTk=")
    config = TracingConfig(otlp_headers={"x-tenant": "acme"}, otlp_headers_env={"Authorization": "TRACE_BACKEND_AUTH"})
    with OtlpReceiver() as receiver:
        memory = InMemorySpanExporter()
        tracing = setup_tracing(config.model_copy(update={"otlp_endpoint": receiver.url}), tmp_path, exporters=[memory])
        with tracing.span("query", {"note": "sent Basic cGs6c2stbGYtOTk= upstream"}):
            pass
        tracing.force_flush()
        (span,) = receiver.wait_for(1)
        tracing.shutdown()
    sent = {k.lower(): v for k, v in receiver.headers[0].items()}
    assert sent["authorization"] == "Basic cGs6c2stbGYtOTk=" and sent["x-tenant"] == "acme"
    assert span["attributes"]["note"] == "sent *** upstream"
    assert memory.get_finished_spans()[0].attributes["note"] == "sent *** upstream"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("traces.sqlite*"))  # the WAL too
    assert b"cGs6c2stbGYtOTk" not in stored

    monkeypatch.delenv("TRACE_BACKEND_AUTH")
    with pytest.raises(ValueError, match=r"otlp_headers_env.*Authorization \(from \$TRACE_BACKEND_AUTH\)"):
        setup_tracing(config.model_copy(update={"otlp_endpoint": "http://127.0.0.1:9"}), tmp_path)


def test_traces_past_retention_are_dropped_when_a_store_opens(tmp_path):
    config = TracingConfig(retention_days=30)
    tracing = setup_tracing(config, tmp_path)
    old, recent = run_query(tracing), run_query(tracing)
    tracing.shutdown()
    forty_days_ns = 40 * 86400 * 10**9
    with sqlite3.connect(tmp_path / "traces.sqlite") as db:  # age one trace by 40 days
        db.execute("UPDATE spans SET start_ns = start_ns - ?, end_ns = end_ns - ? WHERE trace_id = ?",
                   (forty_days_ns, forty_days_ns, old))
    setup_tracing(config.model_copy(update={"retention_days": None}), tmp_path).shutdown()
    assert {t.trace_id for t in TraceStore.in_store(tmp_path).list_traces(limit=10)} == {old, recent}

    setup_tracing(config, tmp_path).shutdown()
    assert [t.trace_id for t in TraceStore.in_store(tmp_path).list_traces(limit=10)] == [recent]


def test_sqlite_store_round_trip(tracing, tmp_path):
    first = run_query(tracing)
    with pytest.raises(ProviderError), tracing.span("query"):
        list(tracing.wrap(Scripted(fail_after=1)).stream(request()))
    store = TraceStore.in_store(tmp_path)
    newest, oldest = store.list_traces(limit=5)
    assert oldest.trace_id == first and oldest.root_name == "query" and not oldest.error
    assert (oldest.span_count, oldest.input_tokens, oldest.output_tokens, oldest.total_tokens) == (4, 12, 5, 17)
    assert oldest.cost_usd == pytest.approx(0.0012)
    assert newest.error and store.list_traces(limit=1) == [newest]

    loaded = store.load(first[:10])
    (root,) = loaded.roots
    assert [c.name for c in root.children] == ["retrieve", "rerank", "chat scripted-1"]
    retrieve, _, chat = root.children
    assert retrieve.attributes["ragline.retrieval.chunk_ids"] == ["c0", "c1", "c2"]
    assert chat.events[0]["attributes"]["ragline.attempt.error_kind"] == "rate_limit"
    assert all(child.parent_id == root.span_id for child in root.children)
    assert root.start_ns <= chat.start_ns and chat.end_ns <= root.end_ns
    store.close()


def test_cli_list_show_export(tracing, tmp_path):
    trace_id = run_query(tracing)
    runner = CliRunner()
    store = ["--store", str(tmp_path)]

    listed = runner.invoke(traces_app, ["list", "--json", *store])
    assert listed.exit_code == 0, listed.output
    (summary,) = json.loads(listed.stdout)["traces"]
    assert summary["trace_id"] == trace_id and summary["total_tokens"] == 17 and summary["error"] is False

    shown = runner.invoke(traces_app, ["show", trace_id[:8], "--json", *store])
    data = json.loads(shown.stdout)
    assert data["summary"]["root_name"] == "query"
    assert [c["name"] for c in data["spans"][0]["children"]] == ["retrieve", "rerank", "chat scripted-1"]
    assert data["spans"][0]["children"][2]["attributes"]["gen_ai.usage.output_tokens"] == 5

    tree = runner.invoke(traces_app, ["show", trace_id, *store])
    assert tree.exit_code == 0
    for text in ("query", "retrieve", "chat scripted-1", "12→5 tok", "3 hits"):
        assert text in tree.stdout

    page = tmp_path / "trace.html"
    exported = runner.invoke(traces_app, ["export", trace_id, "--html", "--output", str(page), *store])
    assert exported.exit_code == 0, exported.output
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    for text in ("query", "retrieve", "rerank", "chat scripted-1", "doc-1.md", "gen_ai.usage.input_tokens"):
        assert text in html

    assert runner.invoke(traces_app, ["show", "ffff", *store]).exit_code == 1
    assert runner.invoke(traces_app, ["list", "--store", str(tmp_path / "none")]).exit_code == 1
    assert not (tmp_path / "none").exists()


def test_disabled_tracing_is_a_no_op(tmp_path):
    tracing = setup_tracing(TracingConfig(enabled=False), tmp_path)
    with tracing.span("query"):
        assert tracing.wrap(Scripted()).complete(request()).text
        assert current_trace_id() is None
    tracing.shutdown()
    assert not (tmp_path / "traces.sqlite").exists()


