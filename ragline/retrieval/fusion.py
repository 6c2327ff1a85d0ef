"""Reciprocal rank fusion, the one implementation ragline uses wherever rankings merge:
a cross-encoder's ranking with the first stage's, rewrites of a question, fan-out branches.

k = 2, Qdrant's own RRF constant, so fusion inside the engine (hybrid dense + BM25) and in
ragline score alike. A small k lets a clear first place in either ranking count; with the
textbook k = 60 all ranks 1-20 score nearly the same. On SciFact dev (809 queries) hybrid +
cross-encoder fused with k = 2 scores nDCG@10 0.745 (benchmarks/rerank_fusion.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ragline.models import Hit

RRF_K = 2


def rrf(rank: int) -> float:
    """The fused score of one 1-based rank."""
    return 1.0 / (RRF_K + rank)


def fused_with_first_stage(scores: Sequence[float]) -> list[float]:
    """Each candidate's fused score, for candidates in first-stage order and a second stage's
    `scores` of them: the RRF of its second-stage rank and its first-stage rank."""
    by_score = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    second_rank = {index: rank for rank, index in enumerate(by_score, start=1)}
    return [rrf(second_rank[i]) + rrf(i + 1) for i in range(len(scores))]


def fuse(rankings: Sequence[Sequence[Hit]], top_k: int | None = None) -> list[Hit]:
    """Several hit lists merged by chunk; each hit's score becomes its summed RRF score and
    ties keep the order in which chunks were first seen."""
    scores: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for hits in rankings:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + rrf(rank)
            first_seen.setdefault(hit.chunk_id, hit)
    fused = sorted(first_seen, key=lambda chunk: -scores[chunk])
    return [first_seen[c].model_copy(update={"score": scores[c]}) for c in fused][:top_k]
