"""Document-level access control end to end, on both store backends (the embedded engine and
qdrant-client's `:memory:` server API), with the real embedder and cross-encoder.

Property tests draw principal sets and questions over a corpus with random reader sets;
an independent oracle (the group closure computed here) says what each caller may read,
and every hit, every cited or shown source, and every answer (also through the response
cache and a fan-out pipeline) must stay inside it. The model is a scripted `FakeProvider`
that echoes the document tokens it was shown, so a leaked answer would name them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from items_connector import TOKEN, ItemsConnector

import ragline
from ragline.access.groups import GroupResolverError
from ragline.access.principals import PUBLIC, AccessError
from ragline.llm.fake import FakeProvider
from ragline.pipelines.pipeline import Pipeline

USERS = ["user:u1", "user:u1-1", "user:u2", "user:u3", "user:u4", "user:u5"]
GROUPS = ["group:g1", "group:g2", "group:g3", "group:solo", "group:ghost"]  # ghost: in no groups file
GROUPS_TOML = """
[groups]
"group:g1" = ["user:u1", "group:g2"]
"group:g2" = ["user:u2", "group:g3"]
"group:g3" = ["user:u3", "group:g1"]
"group:solo" = ["user:u4"]
"""
MEMBERS = {"group:g1": {"user:u1", "group:g2"}, "group:g2": {"user:u2", "group:g3"},
           "group:g3": {"user:u3", "group:g1"}, "group:solo": {"user:u4"}}  # fmt: skip
TOPICS = ["salary bands", "vacation policy", "merger plans", "security incident", "hiring freeze", "board minutes"]
OWNERS = ["user:u5"]


def oracle(principals: list[str]) -> set[str]:
    """What the caller's effective set is, computed without ragline: a fixpoint of memberships."""
    have = set(principals) | {PUBLIC}
    while True:
        more = {group for group, members in MEMBERS.items() if members & have} - have
        if not more:
            return have
        have |= more


def visible(corpus: Mapping[str, tuple[str, list[str] | None]], principals: list[str]) -> set[str]:
    effective = oracle(principals)
    return {doc for doc, (_, readers) in corpus.items() if set(readers if readers is not None else OWNERS) & effective}


def make_corpus(seed: int, n: int) -> dict[str, tuple[str, list[str] | None]]:
    rng = random.Random(seed)
    pool = USERS + GROUPS + [PUBLIC]
    corpus = {}
    for i in range(n):
        roll = rng.random()
        readers = None if roll < 0.1 else [] if roll < 0.15 else rng.sample(pool, rng.randint(1, 3))
        first, second = rng.sample(TOPICS, 2)
        corpus[f"doc-{i}"] = (f"Memo docid-{i} on {first} and {second}, for the staff it concerns.", readers)
    return corpus


def echo_sources(request) -> str:
    """The document tokens the prompt showed, then a citation of source 1."""
    shown = sorted(set(TOKEN.findall(request.messages[-1].content)))
    return f"Found {' '.join(shown) or 'nothing'} [1]."


def store_settings(kind: str) -> dict:
    return {"kind": "server", "url": ":memory:", "collection": f"acl_{uuid.uuid4().hex}"} if kind == "server" else {}


def open_rag(path, embedder, kind: str, groups_file, **sections):
    return ragline.open(
        path, embedder=embedder, provider=FakeProvider(echo_sources), store={**store_settings(kind), **sections.pop("store", {})},
        access={"enabled": True, "groups_file": str(groups_file), "ttl_seconds": 0, **sections.pop("access", {})},
        **sections,
    )  # fmt: skip


CORPUS = make_corpus(seed=15, n=48)
EXTRA = {f"extra-{i}": (f"Memo docid-{100 + i} on {TOPICS[i % 6]} and {TOPICS[(i + 2) % 6]}, restricted.", ["group:solo"])
         for i in range(12)}  # fmt: skip


@pytest.fixture(scope="module", params=["edge", "server"])
def corpus_rag(request, tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp(f"acl-{request.param}")
    groups = folder / "groups.toml"
    groups.write_text(GROUPS_TOML)
    rag = open_rag(folder / "store", embedder, request.param, groups)
    connector = ItemsConnector("corpus", CORPUS)
    connector.access = type(connector.access).of(None, OWNERS)
    report = rag.ingest(connector)
    assert report.added == len(CORPUS) and report.failed == 0
    yield rag
    rag.close()


identities = st.builds(
    lambda user, groups: [user, *groups],
    st.sampled_from(USERS),
    st.lists(st.sampled_from(GROUPS), max_size=2, unique=True),
)
questions = st.lists(st.sampled_from(TOPICS), min_size=1, max_size=2, unique=True).map(" and ".join)
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(caller=identities, question=questions, mode=st.sampled_from(["dense", "sparse", "hybrid"]),
       rerank=st.booleans(), mmr=st.booleans(), top_k=st.integers(1, 30))  # fmt: skip
def test_every_hit_is_readable_and_the_filter_is_inside_the_engine(corpus_rag, caller, question, mode, rerank, mmr, top_k):
    allowed = visible(CORPUS, caller)
    assert corpus_rag.components.access.viewer(caller).readable == oracle(caller)
    hits = corpus_rag.retrieve(question, top_k=top_k, mode=mode, rerank=rerank, mmr=mmr, principals=caller)
    assert {hit.document_id for hit in hits} <= allowed
    if mode == "dense":  # every readable chunk is a dense candidate: a post-filter would return fewer
        assert len(hits) == min(top_k, len(allowed))


def fan_out() -> Pipeline:
    return Pipeline.from_dict({"name": "fan-out", "steps": [
        {"kind": "rewrite", "strategy": "multi_query", "n": 2},
        {"kind": "parallel", "branches": [[{"kind": "retrieve", "mode": "dense", "with_vectors": True}],
                                          [{"kind": "retrieve", "mode": "sparse"}]]},
        {"kind": "rerank"},
        {"kind": "synthesize", "top_k": 6},
    ]})  # fmt: skip


def _check_answer(answer, allowed: set[str]) -> None:
    assert {c.document_id for c in [*answer.sources, *answer.citations]} <= allowed
    assert {f"doc-{t.split('-')[1]}" for t in TOKEN.findall(answer.text)} <= allowed


@PROPERTY
@given(first=identities, second=identities, question=questions)
def test_answers_and_cached_answers_never_carry_what_the_caller_may_not_read(corpus_rag, first, second, question):
    for caller in (first, second):  # as A, then as B: B must never get A's cached answer
        allowed = visible(CORPUS, caller)
        answer = corpus_rag.query(question, principals=caller)
        _check_answer(answer, allowed)
        *_, streamed = corpus_rag.query_stream(question, principals=caller)
        _check_answer(streamed, allowed)
        _check_answer(corpus_rag.run_pipeline(fan_out(), question, principals=caller), allowed)
    partitions = {corpus_rag.components.access.viewer(c).partition for c in (first, second)}
    assert len(partitions) == len({frozenset(oracle(first)), frozenset(oracle(second))})


def test_the_cache_answers_a_second_caller_only_with_the_same_effective_set(corpus_rag):
    question = f"vacation policy and board minutes, asked once by {corpus_rag.config.store.kind}"
    assert not corpus_rag.query(question, principals=["user:u4"]).cached
    assert corpus_rag.query(question, principals=["user:u4"]).cached  # same set: cached
    assert corpus_rag.query(question, principals=["user:u4", "group:solo"]).cached  # solo is u4's group anyway
    assert not corpus_rag.query(question, principals=["user:u1-1"]).cached  # another set: asked afresh


def test_adding_documents_a_user_cannot_read_never_changes_that_users_dense_results(tmp_path, embedder):
    """Metamorphic. Dense (and reranked dense) results depend only on readable chunks; BM25's
    IDF is collection-wide, so sparse scores are the documented side channel (README)."""
    groups = tmp_path / "groups.toml"
    groups.write_text(GROUPS_TOML)
    caller = ["user:u2"]
    assert not {"user:u4", "group:solo"} & oracle(caller)
    with open_rag(tmp_path / "store", embedder, "edge", groups) as rag:
        rag.ingest(ItemsConnector("corpus", CORPUS))
        before = {(q, r): rag.retrieve(q, top_k=12, mode="dense", rerank=r, principals=caller)
                  for q in TOPICS for r in (False, True)}  # fmt: skip
        rag.ingest(ItemsConnector("extra", EXTRA))
        for (question, rerank), hits in before.items():
            after = rag.retrieve(question, top_k=12, mode="dense", rerank=rerank, principals=caller)
            assert [(h.chunk_id, round(h.score, 5)) for h in after] == [(h.chunk_id, round(h.score, 5)) for h in hits]
            hybrid = rag.retrieve(question, top_k=12, principals=caller)
            assert {h.document_id for h in hybrid} <= visible(CORPUS, caller)


class CountingEmbedder:
    """The real embedder, counting the document texts it embeds."""

    def __init__(self, embedder):
        self._embedder, self.texts = embedder, 0

    def embed(self, texts):
        self.texts += len(texts)
        return self._embedder.embed(texts)

    def __getattr__(self, name):
        return getattr(self._embedder, name)


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_a_revoked_reader_disappears_after_the_next_ingest_with_nothing_embedded(tmp_path, embedder, kind):
    groups = tmp_path / "groups.toml"
    groups.write_text('[groups]\n"group:hr" = ["user:hana"]\n"group:finance" = ["user:fiona"]\n')
    counting = CountingEmbedder(embedder)
    docs = {"salaries": ("Memo docid-1: the salary bands for 2027.", ["group:hr"]),
            "holidays": ("Memo docid-2: the vacation policy.", ["public"])}  # fmt: skip
    with open_rag(tmp_path / "store", counting, kind, groups) as rag:
        rag.ingest(ItemsConnector("hr", docs))
        assert "salaries" in {h.document_id for h in rag.retrieve("salary bands", principals=["user:hana"])}
        embedded = counting.texts
        docs["salaries"] = (docs["salaries"][0], ["group:finance"])  # the source changed who may read it
        report = rag.ingest(ItemsConnector("hr", docs))
        assert (report.permissions_updated, report.unchanged, report.chunks_embedded) == (1, 2, 0)
        assert counting.texts == embedded  # measured: the model embedded nothing
        assert "salaries" not in {h.document_id for h in rag.retrieve("salary bands", principals=["user:hana"])}
        assert "salaries" in {h.document_id for h in rag.retrieve("salary bands", principals=["user:fiona"])}
        again = rag.ingest(ItemsConnector("hr", docs))
        assert again.permissions_updated == 0 and again.unchanged == 2
        groups.write_text('[groups]\n"group:finance" = []\n')  # fiona left finance: no re-ingest needed
        assert "salaries" not in {h.document_id for h in rag.retrieve("salary bands", principals=["user:fiona"])}


@pytest.fixture
def small(tmp_path, embedder):
    groups = tmp_path / "groups.toml"
    groups.write_text('[groups]\n"group:hr" = ["user:hana"]\n')

    def build(**sections):
        return open_rag(tmp_path / "store", embedder, "edge", groups, **sections)

    return build


def test_calls_without_identity_or_with_a_malformed_one_are_refused(small):
    with small() as rag:
        rag.ingest(ItemsConnector("x", {"a": ("Memo docid-1 on the vacation policy.", ["public"])}))
        for call in (lambda: rag.retrieve("vacation"), lambda: rag.query("vacation"),
                     lambda: next(iter(rag.query_stream("vacation"))), lambda: rag.run_pipeline("default", "vacation")):  # fmt: skip
            with pytest.raises(AccessError, match="access control is enabled"):
                call()
        for bad in (["hana"], ["user: hana"], "user:hana", []):
            with pytest.raises(AccessError):
                rag.retrieve("vacation", principals=bad)
        assert [h.document_id for h in rag.retrieve("vacation", principals=["user:anyone"])] == ["a"]


def test_unknown_readers_go_to_owners_only_and_an_admin_bypass_is_explicit(small):
    docs = {"unknown": ("Memo docid-1 on merger plans.", None), "ghost": ("Memo docid-2 on merger plans.", ["group:ghost"])}
    with small(access={"admins": ["user:root"]}) as rag:
        plain = ItemsConnector("plain", {"unknown": docs["unknown"]})
        owned = ItemsConnector("owned", {"owned": ("Memo docid-3 on merger plans.", None)})
        owned.access = type(owned.access).of(None, ["user:olga"])
        rag.ingest([plain, owned, ItemsConnector("ghost", {"ghost": docs["ghost"]})])
        assert rag.retrieve("merger plans", principals=["user:hana"]) == []
        assert [h.document_id for h in rag.retrieve("merger plans", principals=["user:olga"])] == ["owned"]
        # an unknown group matches nobody who does not hold it
        assert rag.retrieve("merger plans", principals=["user:hana", "group:hr"]) == []
        assert {h.document_id for h in rag.retrieve("merger plans", principals=["user:root"])} == {"unknown", "owned", "ghost"}
        assert rag.components.access.viewer(["user:root"]).admin


def test_a_resolver_that_cannot_answer_fails_the_query(small, tmp_path):
    with small(access={"groups_file": str(tmp_path / "missing.toml")}) as rag:
        rag.ingest(ItemsConnector("x", {"a": ("Memo docid-1 on the vacation policy.", ["group:hr"])}))
        with pytest.raises(GroupResolverError, match="cannot be read"):
            rag.retrieve("vacation", principals=["user:hana"])
        with pytest.raises(GroupResolverError):
            rag.query("vacation", principals=["user:hana"])


def test_a_malformed_reader_fails_the_document_which_keeps_its_previous_version(small):
    with small() as rag:
        rag.ingest(ItemsConnector("x", {"a": ("Memo docid-1 on the vacation policy.", ["public"])}))
        report = rag.ingest(ItemsConnector("x", {"a": ("Memo docid-1 rewritten for hr.", ["hr"])}))
        assert report.failed == 1 and "malformed" in report.errors[0].error
        [hit] = rag.retrieve("vacation", principals=["user:anyone"])
        assert hit.text == "Memo docid-1 on the vacation policy." and hit.metadata["readers"] == ["public"]


def test_metadata_cannot_override_readers_and_similar_names_never_match(small):
    with small() as rag:
        rag.ingest([
            ItemsConnector("a", {"one": ("Memo docid-1 on hiring freeze.", ["user:user-1"])}, metadata={"readers": ["public"]}),
            ItemsConnector("b", {"two": ("Memo docid-2 on hiring freeze.", ["user:user-2"])}),
        ])  # fmt: skip
        assert [h.document_id for h in rag.retrieve("hiring freeze", principals=["user:user-1"])] == ["one"]
        assert [h.document_id for h in rag.retrieve("hiring freeze", principals=["user:user-2"])] == ["two"]
        assert rag.retrieve("hiring freeze", principals=["user:user"]) == []


def test_the_cli_needs_as_when_access_is_enabled(tmp_path, embedder, capsys):
    import json

    from ragline.cli import main

    config = tmp_path / "ragline.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "store"}"\n[access]\nenabled = true\n')
    with ragline.open(config_file=config, embedder=embedder) as rag:
        rag.ingest(ItemsConnector("x", {"a": ("Memo docid-1 on the vacation policy.", ["group:hr"])}))

    def run(*args):
        with pytest.raises(SystemExit) as exited:
            main([*args, "--config", str(config), "--json"])
        return exited.value.code, json.loads(capsys.readouterr().out.splitlines()[-1])

    code, body = run("retrieve", "vacation")
    assert code == 1 and body["error"]["kind"] == "access" and "--as user:NAME" in body["error"]["message"]
    code, body = run("retrieve", "vacation", "--as", "hana")
    assert code == 0 and body["hits"] == []
    code, body = run("retrieve", "vacation", "--as", "user:hana", "--group", "hr")
    assert code == 0 and [h["document_id"] for h in body["hits"]] == ["a"]
    code, body = run("retrieve", "vacation", "--as", "group:hr")
    assert code == 2 and body["error"]["kind"] == "usage"
