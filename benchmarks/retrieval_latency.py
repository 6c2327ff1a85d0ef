"""Retrieval latency per query (query embedding included, no LLM, no rerank), per mode,
against a baseline measured in the same run: the same query embedding plus a brute-force
numpy cosine scan over every stored vector. Also reports recall@10 of the store's dense
search against that exact scan (HNSW is approximate once `optimize` built it).

    python benchmarks/retrieval_latency.py --store STORE_DIR --queries queries.jsonl [--limit 200]

STORE_DIR is an existing ragline store (e.g. the one `ragline eval retrieval` built).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import ragline
from ragline.app import EMBEDDING_CACHE_FILE
from ragline.ingest.embedding_cache import EmbeddingCache


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()

    queries = [json.loads(line)["text"] for line in args.queries.open() if line.strip()][: args.limit]
    console = Console()
    with ragline.open(args.store, retrieval={"rerank": "none"}) as rag:
        points = list(rag.store.iter_points())
        console.print(f"{len(points)} points, {len(queries)} queries")
        ids = [p.id for p in points]
        # The baseline's vectors come from the store's embedding cache (keyed by text hash).
        cache = EmbeddingCache(args.store / EMBEDDING_CACHE_FILE)
        cached = cache.get(rag.embedder.model_id, (p.payload["content_hash"] for p in points))
        cache.close()
        matrix = np.asarray([cached[p.payload["content_hash"]] for p in points], dtype=np.float32)
        rag.retrieve(queries[0], top_k=args.top_k)  # warm caches and models

        baseline, exact_top = [], []
        for query in queries:
            start = time.perf_counter()
            vector = np.asarray(rag.embedder.embed_query(query), dtype=np.float32)
            top = np.argsort(-(matrix @ vector))[: args.top_k]
            baseline.append(time.perf_counter() - start)
            exact_top.append({ids[i] for i in top})

        table = Table("mode", "p50 ms", "p95 ms", "p50 vs baseline", "recall@10 vs exact")
        base_p50, base_p95 = _percentiles(baseline)
        table.add_row("baseline (embed + numpy scan)", f"{base_p50 * 1e3:.1f}", f"{base_p95 * 1e3:.1f}", "1.00x", "1.000")
        for mode in ("dense", "sparse", "hybrid"):
            timings, recall = [], []
            for query, exact in zip(queries, exact_top, strict=True):
                start = time.perf_counter()
                hits = rag.retrieve(query, top_k=args.top_k, mode=mode)
                timings.append(time.perf_counter() - start)
                recall.append(len(exact & {h.chunk_id for h in hits}) / len(exact))
            p50, p95 = _percentiles(timings)
            shown_recall = f"{statistics.mean(recall):.3f}" if mode == "dense" else "-"
            table.add_row(mode, f"{p50 * 1e3:.1f}", f"{p95 * 1e3:.1f}", f"{p50 / base_p50:.2f}x", shown_recall)
    console.print(table)


if __name__ == "__main__":
    main()
