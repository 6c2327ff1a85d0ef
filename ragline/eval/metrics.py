"""Ranking metrics with trec_eval's definitions, for one query's ranked document ids.

`run` is the ranked list of retrieved document ids; `qrels` maps judged document ids to
graded relevance (> 0 means relevant). A document retrieved twice (several chunks of one
document) counts at its first rank only, so no metric can exceed 1 (llama_index #17070);
the ideal DCG ranks min(|relevant|, k) documents (PR #22683). With nothing relevant to
find, every metric is `undefined`, not 0: the item says nothing about the ranking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ragline.eval.scores import Score, ratio

NO_RELEVANT = "no relevant documents for this item"


def unique_ranking(run: Sequence[str]) -> list[str]:
    """`run` with repeats removed, each document at its first rank."""
    return list(dict.fromkeys(run))


def _relevant(qrels: Mapping[str, int]) -> set[str]:
    return {doc for doc, rel in qrels.items() if rel > 0}


def ndcg_at_k(run: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> Score:
    """nDCG@k with linear gains (trec_eval `ndcg_cut`): sum(rel / log2(rank + 1))."""
    ideal = sorted((rel for rel in qrels.values() if rel > 0), reverse=True)[:k]
    if not ideal:
        return Score.undefined(NO_RELEVANT)
    dcg = sum(max(qrels.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(unique_ranking(run)[:k]))
    idcg = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(ideal))
    return Score.of(min(1.0, dcg / idcg))


def recall_at_k(run: Sequence[str], qrels: Mapping[str, int], k: int) -> Score:
    relevant = _relevant(qrels)
    return ratio(len(relevant.intersection(unique_ranking(run)[:k])), len(relevant), undefined_reason=NO_RELEVANT)


def precision_at_k(run: Sequence[str], qrels: Mapping[str, int], k: int) -> Score:
    """Relevant share of the top k (trec_eval `P_k`: the denominator is k, not what was returned)."""
    if not _relevant(qrels):
        return Score.undefined(NO_RELEVANT)
    return Score.of(len(_relevant(qrels).intersection(unique_ranking(run)[:k])) / k)


def hit_at_k(run: Sequence[str], qrels: Mapping[str, int], k: int) -> Score:
    """1 when any relevant document is in the top k."""
    relevant = _relevant(qrels)
    if not relevant:
        return Score.undefined(NO_RELEVANT)
    return Score.of(1.0 if relevant.intersection(unique_ranking(run)[:k]) else 0.0)


def mrr_at_k(run: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> Score:
    """Reciprocal rank of the first relevant document within the top k (0 if none)."""
    relevant = _relevant(qrels)
    if not relevant:
        return Score.undefined(NO_RELEVANT)
    for rank, doc in enumerate(unique_ranking(run)[:k], start=1):
        if doc in relevant:
            return Score.of(1.0 / rank)
    return Score.of(0.0)


def average_precision(run: Sequence[str], qrels: Mapping[str, int], k: int | None = None) -> Score:
    """AP (trec_eval `map`, cut at k when given): mean precision at each relevant rank,
    over all relevant documents (unretrieved ones count 0)."""
    relevant = _relevant(qrels)
    if not relevant:
        return Score.undefined(NO_RELEVANT)
    found, total = 0, 0.0
    for rank, doc in enumerate(unique_ranking(run)[:k], start=1):
        if doc in relevant:
            found += 1
            total += found / rank
    return Score.of(total / len(relevant))
