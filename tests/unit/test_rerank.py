"""The bundled int8 ONNX cross-encoder, run for real."""

from __future__ import annotations

import pytest

from ragline.models import Hit
from ragline.retrieval.rerank import OnnxCrossEncoder, passage

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


def test_fusion_keeps_the_first_stage_in_the_vote(reranker):
    """RRF of cross-encoder rank and first-stage rank: the first stage's favourite (c0, which
    the cross-encoder ranks third) stays ahead of a passage only the cross-encoder likes."""
    hits = [Hit(document_id=f"d{i}", chunk_id=f"c{i}", score=1.0 - i / 10, text=t) for i, t in enumerate(PASSAGES)]
    assert [h.chunk_id for h in reranker.rerank(QUERY, hits)] == ["c1", "c3", "c0", "c2"]
    fused = reranker.rerank(QUERY, hits, fusion=True)
    assert [h.chunk_id for h in fused] == ["c1", "c0", "c3", "c2"]
    assert fused[0].score == pytest.approx(1 / 3 + 1 / 4)  # cross-encoder 1st, first stage 2nd (k=2)
    assert fused[0].metadata["rerank_score"] > 0 and fused[0].metadata["first_stage_score"] == pytest.approx(0.9)


def test_cross_encoder_reads_the_title_with_later_chunks():
    later = Hit(document_id="d", chunk_id="c", score=1.0, text="It ships in May.", metadata={"title": "Beacon monitor"})
    first = later.model_copy(update={"text": "Beacon monitor\n\nThe Beacon air monitor ..."})
    assert passage(later) == "Beacon monitor\n\nIt ships in May."
    assert passage(first) == first.text
    assert passage(later.model_copy(update={"metadata": {}})) == "It ships in May."
