"""What `rag.retrieve(q)` costs with each second stage, on one store, in the same run.

    python benchmarks/second_stage_latency.py --store STORE_DIR --queries queries.jsonl [--limit 200] [--top-k 10]

STORE_DIR must hold second-stage vectors (a store created with `retrieval.rerank =
"vectors"`, the default; e.g. the SciFact store `ranking_ablation.py --stores DIR` built).
Each variant opens the store with its own `[retrieval]` overrides and the variants take
turns per query, so load from other processes hits them alike. Printed: p50/p95 per
variant and its ratio to the first stage alone (the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.eval.retrieval import load_queries  # noqa: E402
from ragline.retrieval.rerank import OnnxCrossEncoder  # noqa: E402
from ragline.retrieval.retriever import Retriever  # noqa: E402
from ragline.retrieval.second_stage import SecondStageEncoder, StoredVectorReranker  # noqa: E402

BASELINE = "first stage only"
VARIANTS = {
    BASELINE: {"rerank": "none"},
    "stored vectors over 40 (default)": {"rerank": "vectors"},
    "stored vectors over 20": {"rerank": "vectors", "rerank_top_n": 20},
    "cross-encoder over 20 (onnx)": {"rerank": "onnx"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args()
    questions = list(load_queries(args.queries).values())[: args.limit]
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with ragline.open(args.store, tracing={"enabled": False}) as rag:
        store, embedder = rag.components.store, rag.components.embedder
        if store.second_dim is None:
            raise SystemExit(f"{args.store} holds no second-stage vectors: build it with retrieval.rerank = 'vectors'")
        stored = StoredVectorReranker(store, SecondStageEncoder())
        rerankers = {"none": None, "vectors": stored, "onnx": OnnxCrossEncoder()}
        retrievers = {  # one store and embedder, as `ragline.open` with each override would build
            name: Retriever(store, embedder, rag.config.retrieval.model_copy(update=overrides),
                            reranker=rerankers[overrides["rerank"]])
            for name, overrides in VARIANTS.items()
        }  # fmt: skip
        for retriever in retrievers.values():
            retriever.retrieve("warm up", 1, readers=None)
        for question in track(questions, description="queries", console=Console(stderr=True)):
            for name, retriever in retrievers.items():
                started = time.perf_counter()
                retriever.retrieve(question, args.top_k, readers=None)
                times[name].append((time.perf_counter() - started) * 1000)
    base = statistics.median(times[BASELINE])
    table = Table("retrieve", "p50 ms", "p95 ms", "p50 / first stage",
                  title=f"{len(questions)} queries, top {args.top_k}, {args.store}")  # fmt: skip
    summary = {}
    for name, values in times.items():
        ordered = sorted(values)
        p50, p95 = statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]
        summary[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "ratio": round(p50 / base, 2)}
        table.add_row(name, f"{p50:.1f}", f"{p95:.1f}", f"{p50 / base:.2f}x")
    Console().print(table)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
