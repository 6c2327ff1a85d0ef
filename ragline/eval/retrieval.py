"""BEIR-style retrieval eval: ingest a corpus, run every judged query, score the ranking.

Chunks are ranked by the store; a document ranks where its best chunk does (BEIR judges
documents). Metrics follow trec_eval: nDCG@10, recall@10, recall@100, MRR@10, averaged
over queries that have at least one judgment.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ragline.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k

DOCUMENT_DEPTH = 100  # recall@100 needs 100 distinct documents per query
CHUNKS_PER_DOCUMENT = 3  # chunk hits fetched per wanted document, so dedup still leaves 100


class RetrievalEvalResult(BaseModel):
    ndcg_at_10: float
    recall_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int
    mode: str
    rerank: bool

    def as_json(self) -> dict[str, float | int | str | bool]:
        return {
            "ndcg@10": self.ndcg_at_10,
            "recall@10": self.recall_at_10,
            "recall@100": self.recall_at_100,
            "mrr@10": self.mrr_at_10,
            "queries": self.queries,
            "mode": self.mode,
            "rerank": self.rerank,
        }


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                queries[str(record["_id"])] = record["text"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: expected a JSON object with _id and text ({exc})") from None
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (query-id, corpus-id, score) with a header row; CRLF is fine."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, None)
        if not header or len(header) < 3:
            raise ValueError(f"{path}: expected a header row query-id, corpus-id, score")
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                query_id, doc_id, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: expected query-id, corpus-id, integer score") from None
            qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


def document_ranking(document_ids: list[str], depth: int = DOCUMENT_DEPTH) -> list[str]:
    """Each document at its best chunk's rank."""
    return list(dict.fromkeys(document_ids))[:depth]


def evaluate(
    search: Callable[[str, int], list[str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    mode: str,
    rerank: bool,
    tick: Callable[[], None] = lambda: None,
) -> RetrievalEvalResult:
    """`search(text, k)` returns chunk-level document ids, best first."""
    judged = [qid for qid in queries if any(score > 0 for score in qrels.get(qid, {}).values())]
    if not judged:
        raise ValueError("no query has a relevance judgment: check that the query ids match the qrels")
    totals = {"ndcg": 0.0, "r10": 0.0, "r100": 0.0, "mrr": 0.0}
    for qid in judged:
        ranking = document_ranking(search(queries[qid], DOCUMENT_DEPTH * CHUNKS_PER_DOCUMENT))
        judgments = qrels[qid]
        # trec_eval's convention for a judged query with nothing relevant: it scores 0.
        totals["ndcg"] += ndcg_at_k(ranking, judgments, 10).value or 0.0
        totals["r10"] += recall_at_k(ranking, judgments, 10).value or 0.0
        totals["r100"] += recall_at_k(ranking, judgments, 100).value or 0.0
        totals["mrr"] += mrr_at_k(ranking, judgments, 10).value or 0.0
        tick()
    n = len(judged)
    return RetrievalEvalResult(
        ndcg_at_10=totals["ndcg"] / n, recall_at_10=totals["r10"] / n, recall_at_100=totals["r100"] / n,
        mrr_at_10=totals["mrr"] / n, queries=n, mode=mode, rerank=rerank,
    )
