"""One contract suite for every `VectorStore`: both backends must behave the same for ingest/retrieval."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from ragline.errors import StoreError
from ragline.retrieval.edge_store import EdgeStore
from ragline.retrieval.server_store import ServerStore
from ragline.retrieval.sparse import corpus_avg_len, count_tokens, encode_query
from ragline.retrieval.store import INDEXED_KEYWORD_FIELDS, StoredPoint, VectorStore

DIM = 8
DOCS = ("doc-a", "doc-b", "doc-c")

# qdrant-client's local mode accepts payload indexes but warns that it ignores them.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def point_id(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragline-test-{i}"))


def make_points(n: int, seed: int = 0) -> list[StoredPoint]:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM))
    return [
        StoredPoint(
            id=point_id(i),
            vector=vectors[i].tolist(),
            payload={
                "document_id": DOCS[i % len(DOCS)],
                "source": f"src/{DOCS[i % len(DOCS)]}.md",
                "chunk_index": i,
                "text": f"chunk {i}",
                "readers": [f"user:u{i % 3}"],
                "meta": {"tags": ["x", str(i)]},
            },
        )
        for i in range(n)
    ]


@pytest.fixture
def shard_root(tmp_path):
    """Shard directories on tmpfs when there is one: the engine fsyncs, and disk syncs dominate runtime."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="ragline-test-", dir=shm))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["edge", "server"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def open_store(kind, shard_root):
    """Factory opening the same store again on each call (edge: same dir unless `name` differs,
    each in its own store directory, which one EdgeStore at a time may hold; server: always a
    new in-memory collection). Keyword arguments go to the store."""
    opened: list[VectorStore] = []
    collection = f"test_{uuid.uuid4().hex}"

    def _open(name: str = "shard", **kwargs) -> VectorStore:
        if kind == "edge":
            store: VectorStore = EdgeStore(shard_root / "nested" / name / "qdrant", **kwargs)
        else:
            store = ServerStore(collection, location=":memory:", **kwargs)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> VectorStore:
    s = open_store()
    s.ensure_collection(DIM)
    return s


def test_search_returns_nearest_first_with_payload(store):
    points = make_points(60)
    store.upsert(points)
    target = points[17]
    query = (np.array(target.vector) + 0.01).tolist()

    hits = store.search(query, top_k=5)

    assert len(hits) == 5
    assert hits[0].id == target.id
    assert hits[0].payload == target.payload
    assert hits[0].score == pytest.approx(1.0, abs=0.01)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # cosine: scaling the query does not change the ranking
    assert [h.id for h in store.search((np.array(query) * 7).tolist(), top_k=5)] == [h.id for h in hits]


def test_upsert_is_idempotent_and_overwrites(store):
    points = make_points(40)
    store.upsert(points)
    store.upsert(points)
    assert store.count() == 40

    changed = points[3].model_copy(update={"payload": {**points[3].payload, "text": "new"}})
    store.upsert([changed])
    assert store.count() == 40
    assert store.search(changed.vector, top_k=1)[0].payload["text"] == "new"


def test_delete_removes_points(store):
    points = make_points(30)
    store.upsert(points)
    gone = [points[0].id, points[5].id]

    store.delete(gone + [str(uuid.uuid4())])  # unknown ids are ignored

    assert store.count() == 28
    for p in (points[0], points[5]):
        assert all(h.id not in gone for h in store.search(p.vector, top_k=30))
    assert {p.id for p in store.iter_points()} == {p.id for p in points} - set(gone)
    store.delete([])
    assert store.count() == 28
    assert not store.is_empty()
    store.delete([p.id for p in points])
    assert store.is_empty() and store.count() == 0


def test_filters_restrict_search(store):
    points = make_points(60)
    store.upsert(points)
    target = points[0]  # in doc-a

    hits = store.search(target.vector, top_k=60, filters={"document_id": "doc-b"})
    assert len(hits) == 20
    assert {h.payload["document_id"] for h in hits} == {"doc-b"}
    assert target.id not in {h.id for h in hits}

    hits = store.search(target.vector, top_k=60, filters={"document_id": ["doc-a", "doc-c"]})
    assert len(hits) == 40
    assert {h.payload["document_id"] for h in hits} == {"doc-a", "doc-c"}
    assert hits[0].id == target.id

    assert store.search(target.vector, top_k=5, filters={"document_id": "missing"}) == []


def test_count_with_and_without_filters(store):
    store.upsert(make_points(31))
    assert store.count() == 31
    assert store.count({"document_id": "doc-a"}) == 11
    assert store.count({"document_id": ["doc-b", "doc-c"]}) == 20
    assert store.count({"source": "src/doc-c.md"}) == 10
    assert store.count({"document_id": "doc-a", "source": "src/doc-b.md"}) == 0  # conditions are ANDed
    assert store.count({"chunk_index": 4}) == 1  # non-indexed, non-string fields filter too


def test_iter_points_pages_through_everything(store):
    points = make_points(300)
    store.upsert(points)
    store.scroll_page_size = 64  # several pages

    seen = list(store.iter_points())
    assert len(seen) == 300
    assert {p.id: p.payload for p in seen} == {p.id: p.payload for p in points}
    assert all(p.score == 0 for p in seen)

    doc_b = list(store.iter_points({"document_id": "doc-b"}))
    assert {p.id for p in doc_b} == {p.id for p in points if p.payload["document_id"] == "doc-b"}


def test_ensure_collection_idempotent_and_dim_mismatch(store):
    store.upsert(make_points(10))
    store.ensure_collection(DIM)
    assert store.count() == 10

    with pytest.raises(ValueError, match=rf"{DIM}-dim.*\b{DIM * 2}\b"):
        store.ensure_collection(DIM * 2)
    with pytest.raises(ValueError):
        store.upsert([StoredPoint(id=point_id(99), vector=[0.1] * (DIM + 1))])
    assert store.count() == 10


def test_second_stage_vectors_are_fixed_at_creation_and_read_back_by_id(open_store, kind):
    """A collection created with a second-stage vector keeps one per point it was given, read
    back by id (reopened too), and the model that made them; one created without refuses
    them; unknown ids are absent. Vectors are unit length, as the engine stores cosine
    vectors normalised."""

    def same(found: dict, expected: list[StoredPoint]) -> bool:
        return found.keys() == {p.id for p in expected} and all(np.allclose(found[p.id], p.second) for p in expected)

    store = open_store()
    assert store.second_dim is None and not store.has_collection()
    store.ensure_collection(DIM, second_dim=3, second_model="/models/encoder")
    unit = np.random.default_rng(3).normal(size=(6, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    points = [p.model_copy(update={"second": unit[i].tolist()}) for i, p in enumerate(make_points(6))]
    store.upsert(points[:5] + [points[5].model_copy(update={"second": None})])
    assert (store.second_dim, store.second_model) == (3, "/models/encoder")
    assert same(store.second_vectors([p.id for p in points] + [point_id(99)]), points[:5])
    with pytest.raises(ValueError, match="2-dim second-stage vector"):
        store.upsert([points[0].model_copy(update={"second": [1.0, 2.0]})])
    if kind == "edge":
        store.close()
        reopened = open_store()
        assert (reopened.second_dim, reopened.second_model) == (3, "/models/encoder")  # kept beside the avg_len
        assert same(reopened.second_vectors([points[2].id]), points[2:3])

    plain = open_store("plain")
    plain.ensure_collection(DIM, second_model="ignored without second_dim")
    assert plain.second_dim is None and plain.second_model is None and plain.second_vectors([points[0].id]) == {}
    with pytest.raises(ValueError, match="no second-stage vectors"):
        plain.upsert(points[:1])


def test_store_without_collection_is_empty(open_store):
    store = open_store()
    assert store.search([0.1] * DIM, top_k=3) == []
    assert store.count() == 0 and store.is_empty()
    assert list(store.iter_points()) == []
    store.delete([point_id(1)])
    with pytest.raises(RuntimeError, match="ensure_collection"):
        store.upsert(make_points(1))

    store.ensure_collection(DIM)
    assert store.is_empty()
    store.upsert(make_points(3))
    assert store.count() == 3 and not store.is_empty()


def test_use_after_close_fails_clearly(store):
    store.upsert(make_points(5))
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.search([0.1] * DIM, top_k=1),
        lambda: store.count(),
        lambda: list(store.iter_points()),
        lambda: store.upsert(make_points(1)),
        lambda: store.delete([point_id(0)]),
        lambda: store.ensure_collection(DIM),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            call()


# -- edge only: the store is a directory on disk ---------------------------------------------


def test_edge_persists_points_dim_and_indexes_across_reopen(shard_root):
    path = shard_root / "a" / "b" / "shard"
    points = make_points(50)
    with EdgeStore(path) as store:
        store.ensure_collection(DIM)
        store.upsert(points)
        store.delete([points[0].id])

    shard = qe.EdgeShard.load(str(path))  # the engine itself sees the keyword indexes
    try:
        schema = shard.info().payload_schema
        for field in INDEXED_KEYWORD_FIELDS:
            assert schema[field].data_type == qe.PayloadSchemaType.Keyword
            assert schema[field].points == (49 if field in points[1].payload else 0)  # periods: documents that state them
    finally:
        shard.close()

    with EdgeStore(path) as reopened:
        assert reopened.count() == 49
        assert {p.id: p.payload for p in reopened.iter_points()} == {p.id: p.payload for p in points[1:]}
        assert reopened.search(points[7].vector, top_k=1)[0].id == points[7].id
        assert reopened.count({"document_id": "doc-b"}) == 17
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))}.*{DIM}-dim.*\b{DIM + 8}\b"):
            reopened.ensure_collection(DIM + 8)
        reopened.ensure_collection(DIM)
        reopened.upsert(make_points(60)[50:])
        assert reopened.count() == 59


def test_edge_existing_empty_directory_is_an_uncreated_collection(shard_root):
    path = shard_root / "shard"
    path.mkdir()
    with EdgeStore(path) as store:
        assert store.count() == 0
        assert store.search([0.1] * DIM, top_k=2) == []
        store.ensure_collection(DIM)
        store.upsert(make_points(4))
    with EdgeStore(path) as reopened:
        assert reopened.count() == 4


def test_edge_refuses_what_it_cannot_serve(shard_root):
    path = shard_root / "shard"
    with EdgeStore(path) as store:
        store.ensure_collection(DIM)
        store.upsert(make_points(3))
        # qdrant-edge cannot match booleans: an error beats a silently empty result
        with pytest.raises(ValueError, match="boolean.*qdrant-edge"):
            store.count({"flag": True})
    with pytest.raises(ValueError, match="no dense vector named 'other'"):
        EdgeStore(path, dense_vector_name="other")
    with EdgeStore(path) as reopened:  # the failed open released the shard
        assert reopened.count() == 3
        with pytest.raises(RuntimeError, match="already open"):
            EdgeStore(path)


def test_edge_refuses_a_shard_without_its_write_ahead_log(shard_root):
    import qdrant_edge as qe

    path = shard_root / "no-wal"
    config = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
                           wal_enabled=False)  # fmt: skip
    qe.EdgeShard.create(str(path), config).close()
    with pytest.raises(StoreError, match="write-ahead log disabled"):
        EdgeStore(path)
    assert (path / "edge_config.json").is_file()  # refused, not touched


# -- sparse BM25 and hybrid search ----------------------------------------------------------

UTC = timezone.utc
MODES = ("dense", "sparse", "hybrid")


def text_point(i: int, text: str | None, vector, **payload) -> StoredPoint:
    payload = {"document_id": DOCS[i % len(DOCS)], **payload}
    if text is not None:
        payload["text"] = text
    return StoredPoint(id=point_id(i), vector=list(map(float, vector)), payload=payload)


def unit(axis: int, noise: float = 0.0, seed: int = 0) -> list[float]:
    v = np.random.default_rng(seed).normal(scale=noise, size=DIM) if noise else np.zeros(DIM)
    v[axis] += 1.0
    return v.tolist()


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def test_bm25_encoder_stems_and_drops_stopwords():
    assert encode_query("running").indices == encode_query("runs").indices == encode_query("run").indices
    assert encode_query("the is of").indices == []
    assert sorted(encode_query("The running dogs").indices) == sorted(encode_query("dog run").indices)
    # length normalisation counts what the encoder indexes: stopwords out, repeats in
    assert count_tokens("The runner is running, running fast") == 4
    assert corpus_avg_len(["alpha beta", "the", None, "gamma delta epsilon zeta"]) == 3.0
    assert corpus_avg_len(["the a", None]) is None


def test_sparse_search_ranks_rare_stemmed_keywords(store):
    rng = np.random.default_rng(1)
    filler = "filler note {} about the weekly schedule"
    points = [text_point(i, filler.format(i), rng.normal(size=DIM)) for i in range(40)]
    runner = text_point(40, "The committee runs a zymurgy workshop", rng.normal(size=DIM))
    weekly = text_point(41, "weekly weekly schedule", rng.normal(size=DIM))
    store.upsert(points + [runner, weekly])

    assert ids(store.search(None, top_k=5, text="running", mode="sparse")) == [runner.id]  # meets "runs"
    hits = store.search(None, top_k=5, text="running zymurgy", mode="sparse")
    assert ids(hits) == [runner.id]
    assert hits[0].payload["text"] == runner.payload["text"]
    # rare terms outweigh common ones (IDF from the engine), repeats count (TF)
    assert store.search(None, top_k=1, text="zymurgy schedule", mode="sparse")[0].id == runner.id
    assert store.search(None, top_k=1, text="weekly", mode="sparse")[0].id == weekly.id
    assert store.search(None, top_k=5, text="the of and", mode="sparse") == []  # stopwords only


def test_hybrid_fuses_dense_and_keyword_matches_inside_qdrant(store):
    rng = np.random.default_rng(2)
    fillers = [text_point(i, f"filler note {i}", rng.normal(size=DIM)) for i in range(30)]
    dense_only = text_point(30, "quarterly revenue report", unit(0, 0.05))  # doc-a
    keyword_only = text_point(31, "the zymurgy handbook", [-x for x in unit(0)])  # doc-b, opposite vector
    store.upsert(fillers + [dense_only, keyword_only])
    query = unit(0)

    assert keyword_only.id not in ids(store.search(query, top_k=5))
    assert ids(store.search(None, top_k=5, text="zymurgy", mode="sparse")) == [keyword_only.id]
    hybrid = store.search(query, top_k=2, text="zymurgy", mode="hybrid")
    assert set(ids(hybrid)) == {dense_only.id, keyword_only.id}
    assert hybrid[0].score >= hybrid[1].score > 0
    assert len(store.search(query, top_k=10, text="zymurgy", mode="hybrid", candidates=3)) <= 6

    only_b = store.search(query, top_k=2, filters={"document_id": "doc-b"}, text="zymurgy", mode="hybrid")
    assert ids(only_b)[0] == keyword_only.id and dense_only.id not in ids(only_b)
    not_b = store.search(
        query, top_k=2, filters={"document_id": ["doc-a", "doc-c"]}, text="zymurgy", mode="hybrid"
    )
    assert ids(not_b)[0] == dense_only.id and keyword_only.id not in ids(not_b)
    store.optimize()  # a no-op or an index build: either way the results stay
    assert ids(store.search(query, top_k=2, text="zymurgy", mode="hybrid")) == ids(hybrid)


def _filter_corpus() -> list[StoredPoint]:
    rng = np.random.default_rng(3)
    points = []
    for i in range(12):
        extra = {"opt": ["x", None, "missing", []][i % 4]}  # a value, null, absent, empty list
        if extra["opt"] == "missing":
            extra = {}
        points.append(
            text_point(
                i,
                f"alpha note {i}",
                rng.normal(size=DIM),
                lang=("en", "fr", "de")[i % 3],
                n=i,
                when=(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i)).isoformat(),
                **extra,
            )
        )
    return points


FILTER_CASES = [
    ({"lang": "en"}, lambda i: i % 3 == 0),
    ({"lang": ["en", "de"]}, lambda i: i % 3 != 1),
    ({"n": {"gte": 3, "lt": 7}}, lambda i: 3 <= i < 7),
    ({"n": {"gt": 8.5}}, lambda i: i > 8),
    ({"when": {"gte": "2024-01-04T00:00:00Z", "lte": "2024-01-06"}}, lambda i: 3 <= i <= 5),
    ({"when": {"lt": datetime(2024, 1, 3, tzinfo=UTC)}}, lambda i: i < 2),
    ({"opt": {"exists": True}}, lambda i: i % 4 == 0),
    ({"opt": {"exists": False}}, lambda i: i % 4 != 0),
    ({"lang": "fr", "n": {"lte": 7}, "opt": {"exists": False}}, lambda i: i % 3 == 1 and i <= 7 and i % 4 != 0),
]


@pytest.mark.parametrize("mode", MODES)
def test_every_filter_kind_in_every_mode(store, mode):
    points = _filter_corpus()
    store.upsert(points)
    query = points[0].vector
    for filters, wanted in FILTER_CASES:
        expected = {p.id for i, p in enumerate(points) if wanted(i)}
        hits = store.search(query, top_k=50, filters=filters, text="alpha", mode=mode)
        assert set(ids(hits)) == expected, filters
        assert len(hits) == len(expected), filters
        if mode == "dense":
            assert store.count(filters) == len(expected), filters
            assert {p.id for p in store.iter_points(filters)} == expected, filters


def test_search_and_filter_arguments_are_validated(store):
    store.upsert(_filter_corpus())
    vector = [0.1] * DIM
    for kwargs, message in [
        ({"vector": None, "mode": "dense"}, "dense search needs a query vector"),
        ({"vector": vector, "mode": "sparse"}, "sparse search needs query text"),
        ({"vector": vector, "mode": "hybrid", "text": "  "}, "hybrid search needs query text"),
        ({"vector": None, "mode": "hybrid", "text": "alpha"}, "hybrid search needs a query vector"),
        ({"vector": vector, "mode": "fuzzy"}, "search mode"),
        ({"vector": vector, "mode": "hybrid", "text": "alpha", "candidates": 0}, "candidates"),
    ]:
        with pytest.raises(ValueError, match=message):
            store.search(top_k=3, **kwargs)
    for filters, message in [
        ({"n": {"between": [1, 2]}}, "range operators"),
        ({"n": {"gte": 1, "lt": "2024-01-01"}}, "all numbers or all ISO-8601"),
        ({"when": {"gte": "yesterday"}}, "ISO-8601"),
        ({"opt": None}, "exists"),
        ({"score": 0.5}, "range for floats"),
        ({"lang": ["en", 1]}, "only strings or only integers"),
        ({"opt": {"exists": "yes"}}, "True or False"),
    ]:
        with pytest.raises(ValueError, match=message):
            store.search(vector, top_k=3, filters=filters)
        with pytest.raises(ValueError, match=message):
            store.count(filters)


def test_avg_len_comes_from_the_first_batch_and_is_used(open_store):
    first = [text_point(i, "alpha beta gamma " * (i + 1), unit(i % DIM)) for i in range(4)]  # 3..12 tokens
    store = open_store("auto")
    store.ensure_collection(DIM)
    assert store.bm25_avg_len is None
    store.upsert([text_point(9, None, unit(1))])  # no text: nothing to learn from yet
    assert store.bm25_avg_len is None
    store.upsert(first)
    assert store.bm25_avg_len == 7.5
    store.upsert([text_point(5, "delta " * 200, unit(2))])  # later batches keep it
    assert store.bm25_avg_len == 7.5

    same = open_store("same", bm25_avg_len=7.5)
    default = open_store("default", bm25_avg_len=256)
    for other in (same, default):
        other.ensure_collection(DIM)
        other.upsert([text_point(9, None, unit(1))] + first + [text_point(5, "delta " * 200, unit(2))])
    scores = {
        s: [h.score for h in s.search(None, top_k=10, text="alpha", mode="sparse")] for s in (store, same, default)
    }
    assert scores[store] == pytest.approx(scores[same])
    assert scores[store] != pytest.approx(scores[default])


def test_vector_names_are_configurable(open_store):
    store = open_store(dense_vector_name="text-dense", sparse_vector_name="text-sparse")
    store.ensure_collection(DIM)
    points = _filter_corpus()
    store.upsert(points)
    for mode in MODES:
        hits = store.search(points[4].vector, top_k=1, text="alpha note 4", mode=mode)
        assert ids(hits) == [points[4].id], mode


def test_collection_without_sparse_vector_serves_dense_only(kind, shard_root):
    collection = f"legacy_{uuid.uuid4().hex[:8]}"
    if kind == "edge":
        path = shard_root / "legacy"
        vectors = {"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)}
        qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=vectors)).close()
        store: VectorStore = EdgeStore(path)
        where = str(path)
    else:
        from qdrant_client import models

        store = ServerStore(collection, location=":memory:")
        store._client.create_collection(  # as another tool (or ragline before BM25) would
            collection, vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
        )
        where = collection
    with store:
        store.ensure_collection(DIM)
        points = make_points(20)
        store.upsert(points)
        assert store.bm25_avg_len is None
        assert ids(store.search(points[3].vector, top_k=1)) == [points[3].id]
        for mode in ("sparse", "hybrid"):
            with pytest.raises(ValueError, match=rf"{re.escape(where)}.*no sparse vector named 'bm25'"):
                store.search(points[3].vector, top_k=1, text="chunk", mode=mode)


def test_both_stores_encode_and_score_bm25_alike(shard_root):
    """One encoder, IDF from the engine: the same corpus ranks and scores the same on both."""
    points = _filter_corpus() + [text_point(20, "alpha runs twice: alpha ran", unit(0))]
    results = []
    for store in (EdgeStore(shard_root / "shard"), ServerStore("same", location=":memory:")):
        with store:
            store.ensure_collection(DIM)
            store.upsert(points)
            hits = store.search(None, top_k=5, text="running alpha", mode="sparse")
            results.append([(h.id, h.score) for h in hits])
    (edge_ids, edge_scores), (server_ids, server_scores) = (zip(*r) for r in results)
    assert edge_ids[0] == server_ids[0] == point_id(20)
    assert edge_scores == pytest.approx(server_scores, rel=1e-4)


# -- edge only: avg_len file, HNSW ------------------------------------------------------------


def test_edge_persists_avg_len_next_to_the_shard(shard_root):
    path = shard_root / "shard"
    with EdgeStore(path) as store:
        store.ensure_collection(DIM)
        store.upsert([text_point(i, "alpha beta " * (i + 1), unit(i)) for i in range(3)])  # 2, 4, 6 tokens
    assert json.loads((path / "ragline_store.json").read_text()) == {"bm25_avg_len": 4.0}
    with EdgeStore(path) as reopened:
        assert reopened.bm25_avg_len == 4.0
        reopened.upsert([text_point(7, "gamma " * 50, unit(3))])
        assert reopened.bm25_avg_len == 4.0
        assert ids(reopened.search(None, top_k=1, text="gamma", mode="sparse")) == [point_id(7)]
    with EdgeStore(path, bm25_avg_len=4.0) as same:
        assert same.count() == 4
    with pytest.raises(ValueError, match=r"avg_len 4\.0 but 100"):
        EdgeStore(path, bm25_avg_len=100)
    with EdgeStore(path) as reopened:  # the refused open left the shard unlocked
        assert reopened.bm25_avg_len == 4.0


def test_edge_optimize_builds_hnsw_over_the_threshold(shard_root):
    queries = np.random.default_rng(7).normal(size=(5, DIM)).tolist()
    for name, count, hnsw in (("big", 1200, True), ("small", 150, False)):
        points = make_points(count, seed=5)
        target = points[7]
        with EdgeStore(shard_root / name, hnsw_threshold=300) as store:
            store.ensure_collection(DIM)
            store.upsert(points)
            exact = [ids(store.search(q, top_k=10)) for q in queries]
            store.optimize()
            for q, before in zip(queries, exact):
                assert len(set(ids(store.search(q, top_k=10))) & set(before)) >= 9  # recall@10 vs exact
            assert ids(store.search(None, top_k=1, text="chunk 7", mode="sparse")) == [target.id]
            assert ids(store.search(target.vector, top_k=1, text="chunk 7", mode="hybrid")) == [target.id]
        shard = qe.EdgeShard.load(str(shard_root / name))
        try:  # sparse vectors count as indexed from the start; dense ones once HNSW is built
            assert shard.info().indexed_vectors_count == (2 * count if hnsw else count)
        finally:
            shard.close()
