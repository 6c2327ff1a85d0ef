"""One contract suite for every `VectorStore`: both backends must behave the same for ingest/retrieval."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from ragline.retrieval.edge_store import EdgeStore
from ragline.retrieval.server_store import ServerStore
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
    """Factory opening the same store again on each call (edge: same dir; server: new collection)."""
    opened: list[VectorStore] = []
    collection = f"test_{uuid.uuid4().hex}"

    def _open() -> VectorStore:
        if kind == "edge":
            store: VectorStore = EdgeStore(shard_root / "nested" / "shard")
        else:
            store = ServerStore(collection, location=":memory:")
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


def test_store_without_collection_is_empty(open_store):
    store = open_store()
    assert store.search([0.1] * DIM, top_k=3) == []
    assert store.count() == 0
    assert list(store.iter_points()) == []
    store.delete([point_id(1)])
    with pytest.raises(RuntimeError, match="ensure_collection"):
        store.upsert(make_points(1))

    store.ensure_collection(DIM)
    store.upsert(make_points(3))
    assert store.count() == 3


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
            assert schema[field].points == 49
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
        with pytest.raises(ValueError, match="boolean"):
            store.count({"flag": True})
    with pytest.raises(ValueError, match="no dense vector named 'other'"):
        EdgeStore(path, dense_vector_name="other")
    with EdgeStore(path) as reopened:  # the failed open released the shard
        assert reopened.count() == 3
        with pytest.raises(RuntimeError, match="already open"):
            EdgeStore(path)
