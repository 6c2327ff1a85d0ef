"""The bundled int8 ONNX cross-encoder, run for real."""

from __future__ import annotations

import pytest

from ragline.models import Hit
from ragline.retrieval.rerank import OnnxCrossEncoder

QUERY = "How many days of paid leave do new employees get?"
PASSAGES = [
    "Passwords must be at least 14 characters long and rotated every 180 days.",
    "New employees get 25 days of paid leave per year, starting from their first day.",
    "The Beacon air monitor ships with firmware 4.7.2 and a two-year warranty.",
    "Every new employee gets an onboarding buddy for the first 3 months.",
]


@pytest.fixture(scope="module")
def reranker():
    return OnnxCrossEncoder(threads=1)


def test_relevant_passage_scores_highest(reranker):
    scores = reranker.scores(QUERY, PASSAGES)
    assert max(range(len(scores)), key=scores.__getitem__) == 1
    assert scores[1] > 0 > scores[2]


def test_scores_do_not_depend_on_batch_company(reranker):
    """Int8 scores shift with padding: only equal-length pairs may share a batch."""
    together = reranker.scores(QUERY, PASSAGES)
    alone = [reranker.scores(QUERY, [passage])[0] for passage in PASSAGES]
    assert together == alone


def test_rerank_reorders_the_head_and_keeps_the_tail(reranker):
    hits = [Hit(document_id=f"d{i}", chunk_id=f"c{i}", score=1.0 - i / 10, text=t) for i, t in enumerate(PASSAGES)]
    reranked = reranker.rerank(QUERY, hits, top_n=3)
    assert reranked[0].chunk_id == "c1"
    assert reranked[0].metadata["first_stage_score"] == pytest.approx(0.9)
    assert [h.chunk_id for h in reranked[3:]] == ["c3"]  # beyond top_n: untouched, after the head
    assert sorted(h.chunk_id for h in reranked[:3]) == ["c0", "c1", "c2"]
