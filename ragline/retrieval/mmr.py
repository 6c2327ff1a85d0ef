"""Maximal marginal relevance: trade a little relevance for less redundancy among the hits.

Near-duplicate chunks (the same paragraph in two files, overlapping windows, boilerplate)
rank high together and crowd other evidence out of the top k. MMR picks each next hit by
`lambda * relevance - (1 - lambda) * max cosine similarity to the hits already picked`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def mmr_order(scores: Sequence[float], vectors: Sequence[Sequence[float]], lambda_: float) -> list[int]:
    """Every index once, in MMR pick order. Scores are min-max normalised to [0, 1] first, so
    `lambda_` means the same whatever produced them (RRF, cosine, BM25 or a cross-encoder)."""
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"MMR lambda must be within [0, 1], got {lambda_}")
    n = len(scores)
    if n != len(vectors):
        raise ValueError(f"MMR needs one vector per hit: {n} scores, {len(vectors)} vectors")
    if n == 0:
        return []
    relevance = np.asarray(scores, dtype=np.float64)
    spread = relevance.max() - relevance.min()
    relevance = (relevance - relevance.min()) / spread if spread > 0 else np.ones(n)
    matrix = np.asarray(vectors, dtype=np.float64)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    similarity = matrix @ matrix.T
    picked: list[int] = []
    redundancy = np.zeros(n)  # max similarity to a picked hit (dissimilar earns no bonus)
    left = np.ones(n, dtype=bool)
    for _ in range(n):
        value = np.where(left, lambda_ * relevance - (1.0 - lambda_) * redundancy, -np.inf)
        best = int(np.argmax(value))  # ties keep the earlier (better ranked) hit
        picked.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return picked


def diversify(hits: Sequence[T], scores: Sequence[float], vectors: Sequence[Sequence[float]],
              lambda_: float) -> list[T]:
    """`hits` re-ordered by MMR (all of them: callers cut to their top k)."""
    return [hits[i] for i in mmr_order(scores, vectors, lambda_)]
