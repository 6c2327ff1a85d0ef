"""Reranking on a BEIR dataset with cross-encoder scores cached per (query, chunk), so rerank
depth and fusion can be compared without re-scoring (a full SciFact run is ~16k pairs, about
an hour on a busy 2-core box). Prints nDCG@10 / recall / MRR for the first stage alone, the
cross-encoder alone and the cross-encoder fused with the first stage by RRF (the default).

    python benchmarks/rerank_fusion.py --store STORE_DIR --queries queries.jsonl --qrels qrels.tsv \\
        [--mode hybrid] [--limit 200] [--depth 20] [--cache /tmp/rerank-scores.sqlite]

STORE_DIR is a store holding the corpus (e.g. the one `ragline eval retrieval` built). Run it
again with the same cache to resume or to try another --depth.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from ragline.eval.retrieval import CHUNKS_PER_DOCUMENT, DOCUMENT_DEPTH, document_ranking, load_qrels, load_queries
from ragline.retrieval.fusion import rrf
from ragline.retrieval.rerank import passage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--qrels", type=Path, required=True)
    parser.add_argument("--mode", default="hybrid", choices=["dense", "sparse", "hybrid"])
    parser.add_argument("--limit", type=int, default=200, help="first N judged queries (0: all)")
    parser.add_argument("--depth", type=int, default=20, help="first-stage chunks the cross-encoder reads")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rerank-scores.sqlite"))
    args = parser.parse_args()

    queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    judged = [q for q in queries if any(s > 0 for s in qrels.get(q, {}).values())]
    judged = judged[: args.limit] if args.limit else judged
    db = sqlite3.connect(args.cache)
    db.execute("CREATE TABLE IF NOT EXISTS score (query TEXT, chunk TEXT, value REAL, PRIMARY KEY (query, chunk))")
    rankings: dict[str, dict[str, list[str]]] = {"first stage": {}, "cross-encoder alone": {}, "cross-encoder + RRF": {}}
    with ragline.open(args.store, retrieval={"rerank": "onnx"}) as rag:  # the cross-encoder this measures
        reranker = rag.reranker
        for qid in track(judged, description="queries"):
            hits = rag.retrieve(queries[qid], top_k=DOCUMENT_DEPTH * CHUNKS_PER_DOCUMENT, mode=args.mode, rerank=False)
            head, tail = hits[: args.depth], hits[args.depth :]
            known = dict(db.execute("SELECT chunk, value FROM score WHERE query = ?", (qid,)).fetchall())
            missing = [h for h in head if h.chunk_id not in known]
            if missing:
                scores = reranker.scores(queries[qid], [passage(h) for h in missing])
                db.executemany("INSERT OR REPLACE INTO score VALUES (?, ?, ?)",
                               [(qid, h.chunk_id, s) for h, s in zip(missing, scores)])
                db.commit()
                known.update((h.chunk_id, s) for h, s in zip(missing, scores))
            by_score = sorted(range(len(head)), key=lambda i: known[head[i].chunk_id], reverse=True)
            cross_rank = {index: rank for rank, index in enumerate(by_score)}
            fused = sorted(range(len(head)), key=lambda i: rrf(cross_rank[i] + 1) + rrf(i + 1), reverse=True)
            for name, order in (("first stage", range(len(head))), ("cross-encoder alone", by_score),
                                ("cross-encoder + RRF", fused)):
                rankings[name][qid] = document_ranking([head[i].document_id for i in order] + [h.document_id for h in tail])

    table = Table(f"{args.mode}, {len(judged)} queries, depth {args.depth}", "nDCG@10", "recall@10", "recall@100", "MRR@10")
    for name, ranking in rankings.items():
        n = len(ranking)
        table.add_row(name, *(f"{sum(metric(r, qrels[q], k).value or 0.0 for q, r in ranking.items()) / n:.4f}"
                              for metric, k in ((ndcg_at_k, 10), (recall_at_k, 10), (recall_at_k, 100), (mrr_at_k, 10))))
    Console().print(table)


if __name__ == "__main__":
    main()
