"""The answer cache in front of retrieval: a repeated question on an unchanged store is
answered without a search or a model call; any ingest commit that changes the index (a
changed cited document, a readers change), another principal set, other settings, or
`cache=False` gets a fresh answer. Real store and embedder; a scripted model."""

from __future__ import annotations

import asyncio
import re
import shutil

from conftest import SAMPLES
from items_connector import ItemsConnector

import ragline
from ragline.access.traces import trace_readable
from ragline.llm.fake import FakeProvider
from ragline.tracing.store import TraceStore

QUESTION = "How many days of paid leave do new employees get?"


class CountingEmbedder:
    """The real embedder, counting query embeddings (each is one search)."""

    def __init__(self, embedder):
        self._embedder, self.queries = embedder, 0

    def embed_query(self, text):
        self.queries += 1
        return self._embedder.embed_query(text)

    def __getattr__(self, name):
        return getattr(self._embedder, name)


def _leave_days(request) -> str:
    found = re.search(r"(\d+) days of paid leave", "\n".join(message.content for message in request.messages))
    return f"New employees get {found.group(1) if found else 'some'} days of paid leave [1]."


def _open(path, embedder, provider, **sections):
    return ragline.open(path, embedder=embedder, provider=provider, **sections)


def _remembered(rag, embedder: CountingEmbedder, question: str, **options):
    """Ask, and whether the answer cache answered: cached, and no search was made (a
    response-cache hit is cached too, but only after a full retrieval)."""
    searches = embedder.queries
    answer = rag.query(question, **options)
    return answer.cached and embedder.queries == searches, answer


def test_a_repeated_question_skips_retrieval_and_the_model(samples_store, embedder):
    counting, model = CountingEmbedder(embedder), FakeProvider(_leave_days)
    with _open(samples_store, counting, model) as rag:
        first = rag.query(QUESTION)
        searches, calls = counting.queries, model.calls
        again = rag.query(QUESTION)
        *deltas, streamed = rag.query_stream(QUESTION)
        awaited = asyncio.run(rag.aquery(QUESTION))
        assert (counting.queries, model.calls) == (searches, calls)  # no search, no model call
        for answer in (again, streamed, awaited):
            assert answer.cached and answer.cost_usd == 0 and answer.attempts == []
            assert answer.text == first.text and answer.citations == first.citations and answer.sources == first.sources
            assert answer.trace_id != first.trace_id  # the trace of the request that found it
        assert "".join(d.delta for d in deltas) == first.text and not first.cached
        fresh = rag.query(QUESTION, cache=False)  # neither read nor written
        assert not fresh.cached and counting.queries == searches + 1
        assert not rag.query(QUESTION, top_k=2).cached  # other settings: another key
        searched = counting.queries
        rag.run_pipeline("default", QUESTION)  # named pipelines are not remembered: it searches
        assert counting.queries == searched + 1


def test_an_ingest_that_changes_a_cited_document_invalidates_the_answer(tmp_path, embedder):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    model, counting = FakeProvider(_leave_days), CountingEmbedder(embedder)
    with _open(tmp_path / "store", counting, model) as rag:
        rag.ingest(docs)
        before = rag.query(QUESTION)
        assert _remembered(rag, counting, QUESTION)[0] and "25 days" in before.text
        cited = docs / before.citations[0].document_id.split("/")[-1]
        assert cited.name == "employee-handbook.md"
        assert rag.ingest(docs).chunks_embedded == 0
        assert _remembered(rag, counting, QUESTION)[0]  # an unchanged re-run keeps it
        cited.write_text(cited.read_text().replace("25 days", "27 days"))
        report = rag.ingest(docs)
        assert report.updated == 1
        remembered, after = _remembered(rag, counting, QUESTION)
        assert not remembered and not after.cached
        assert "27 days" in after.text and "27 days" in after.citations[0].text
        assert _remembered(rag, counting, QUESTION)[0]


def test_a_readers_change_and_another_principal_set_get_fresh_answers(tmp_path, embedder):
    groups = tmp_path / "groups.toml"
    groups.write_text('[groups]\n"group:hr" = ["user:hana"]\n')
    docs = {"leave": ("Memo docid-1: new employees get 25 days of paid leave.", ["group:hr"])}
    counting = CountingEmbedder(embedder)
    with _open(tmp_path / "store", counting, FakeProvider(_leave_days),
               access={"enabled": True, "groups_file": str(groups)}) as rag:  # fmt: skip
        rag.ingest(ItemsConnector("hr", docs))
        hana = rag.query(QUESTION, principals=["user:hana"])
        assert [s.document_id for s in hana.sources] == ["leave"]
        hit, remembered = _remembered(rag, counting, QUESTION, principals=["user:hana"])
        assert hit and remembered.cached
        trace = TraceStore(tmp_path / "store" / "traces.sqlite").load(remembered.trace_id)
        policy = rag.components.access
        assert trace_readable(trace, policy.viewer(["user:hana"])) and not trace_readable(trace, policy.viewer(["user:olga"]))
        olga = rag.query(QUESTION, principals=["user:olga"])
        assert not olga.cached and olga.sources == []  # never hana's answer
        docs["leave"] = (docs["leave"][0], ["public"])
        assert rag.ingest(ItemsConnector("hr", docs)).permissions_updated == 1
        now = rag.query(QUESTION, principals=["user:olga"])
        assert not now.cached and [s.document_id for s in now.sources] == ["leave"]


def test_answers_can_be_switched_off_and_are_off_while_recording(samples_store, embedder, tmp_path):
    model = FakeProvider(_leave_days)
    with _open(samples_store, embedder, model, cache={"answers": False}) as rag:
        rag.query(QUESTION)
        again = rag.query(QUESTION)
        assert again.cached  # the response cache still answers the model call, after a fresh retrieval
        assert rag.components.answers is None
    with _open(samples_store, embedder, model, replay={"record": str(tmp_path / "calls.jsonl")}) as rag:
        assert rag.components.answers is None  # every model call must reach the cassette
