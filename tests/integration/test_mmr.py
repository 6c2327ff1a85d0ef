"""MMR diversification: near-duplicate chunks must not crowd the top of the results.

The end-to-end cases run `Rag.retrieve` on both real stores with the real embedder, so the
vectors MMR compares are the ones the store hands back (`with_vectors`).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

import ragline
from ragline.cli import app
from ragline.retrieval.mmr import diversify, mmr_order
from ragline.retrieval.store import StoredPoint

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

QUESTION = "How many days of paid leave do new employees get?"
LEAVE = "New employees get 25 days of paid leave per year, starting from their first day."
CHUNKS = {
    # The same paragraph copied into three documents (a template pasted around the wiki).
    "handbook.md": LEAVE,
    "handbook-copy.md": LEAVE,
    "handbook-2025.md": "New employees get 25 days of paid leave per year, starting from their first day!",
    "leave-policy.md": "Paid leave: part-time staff accrue leave pro rata; unused days carry over to March.",
    "onboarding.md": "Every new employee gets an onboarding buddy for the first 3 months.",
    "security.md": "Passwords must be at least 14 characters long and rotated every 180 days.",
}
DUPLICATES = {"handbook.md", "handbook-copy.md", "handbook-2025.md"}


def test_near_duplicates_are_pushed_below_distinct_hits():
    vectors = [[1.0, 0.0], [1.0, 0.01], [0.6, 0.8], [0.0, 1.0]]
    assert mmr_order([1.0, 0.99, 0.7, 0.2], vectors, 0.5) == [0, 2, 1, 3]  # the copy drops below 2


def test_lambda_one_keeps_the_relevance_order_and_scale_does_not_matter():
    vectors = np.random.default_rng(0).normal(size=(6, 4)).tolist()
    scores = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert mmr_order(scores, vectors, 1.0) == list(range(6))
    # Min-max normalisation: a cross-encoder's logits and an RRF score order alike.
    assert mmr_order(scores, vectors, 0.5) == mmr_order([s / 100 for s in scores], vectors, 0.5)
    assert diversify(list("abcdef"), scores, vectors, 1.0) == list("abcdef")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="lambda"):
        mmr_order([1.0], [[1.0]], 1.5)
    with pytest.raises(ValueError, match="one vector per hit"):
        mmr_order([1.0, 0.5], [[1.0]], 0.5)
    assert mmr_order([], [], 0.5) == []


def fill(rag, embedder) -> None:
    rag.store.ensure_collection(embedder.dim)
    names = list(CHUNKS)
    vectors = embedder.embed([CHUNKS[name] for name in names])
    rag.store.upsert([
        StoredPoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            vector=vector,
            payload={"document_id": name, "chunk_id": name, "source": "test", "text": CHUNKS[name]},
        )
        for name, vector in zip(names, vectors)
    ])


@pytest.fixture(params=["edge", "server"])
def rag(request, tmp_path, embedder):
    store = {"kind": "server", "url": ":memory:", "collection": f"mmr_{uuid.uuid4().hex}"} if request.param == "server" else {}
    with ragline.open(tmp_path / "store", embedder=embedder, store=store, retrieval={"rerank": "none"}) as opened:
        fill(opened, embedder)
        yield opened


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_retrieve_with_mmr_diversifies_near_duplicates_away(rag, mode):
    plain = [h.document_id for h in rag.retrieve(QUESTION, top_k=3, mode=mode, mmr=False)]
    assert set(plain) == DUPLICATES  # without MMR the copies fill the top 3

    diverse = [h.document_id for h in rag.retrieve(QUESTION, top_k=3, mode=mode, mmr=True)]
    assert diverse[0] in DUPLICATES
    assert len(DUPLICATES & set(diverse)) == 1
    if mode == "dense":  # cosine relevance: the distinct leave paragraph comes next (RRF of 6 is too flat)
        assert diverse[1] == "leave-policy.md"


def test_mmr_follows_the_config_and_its_lambda(rag):
    rag.config.retrieval.mmr = True
    assert len(DUPLICATES & {h.document_id for h in rag.retrieve(QUESTION, top_k=3)}) == 1
    rag.config.retrieval.mmr_lambda = 1.0  # relevance only: the plain order
    assert {h.document_id for h in rag.retrieve(QUESTION, top_k=3)} == DUPLICATES


def test_store_returns_dense_vectors_only_when_asked(rag, embedder):
    query = embedder.embed_query(QUESTION)
    without = rag.store.search(query, 2)
    assert all(p.vector is None for p in without)
    with_vectors = rag.store.search(query, 2, text=QUESTION, mode="hybrid", with_vectors=True)
    stored = dict(zip(CHUNKS, embedder.embed(list(CHUNKS.values()))))
    for point in with_vectors:
        assert np.allclose(point.vector, stored[point.payload["document_id"]], atol=1e-5)


def test_cli_retrieve_mmr_flag(tmp_path, embedder):
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        fill(rag, embedder)

    def top3(flag: str) -> set[str]:
        result = CliRunner().invoke(app, ["retrieve", QUESTION, "--store", str(tmp_path / "store"), "--top-k", "3",
                                          "--mode", "dense", "--no-rerank", flag, "--json"])
        assert result.exit_code == 0, result.output
        return {hit["document_id"] for hit in json.loads(result.stdout)["hits"]}

    assert top3("--no-mmr") == DUPLICATES
    assert len(top3("--mmr") & DUPLICATES) == 1
