"""The second stage's cost and what it buys: the bundled int8 cross-encoder scored as today
(one pair per session run) against batching, shorter passages and fewer pairs, each with
its nDCG@10 (fused with the first stage by RRF, as `retrieve` does) on the same queries and
the same first-stage hits, measured in the same run.

    python benchmarks/rerank_speed.py --store STORE_DIR --queries queries.jsonl --qrels qrels.tsv [--limit 200]

STORE_DIR holds the corpus (e.g. the SciFact store `ragline eval retrieval` built). Per
variant: the reranker's p50/p95 per query, the first stage's p50 added (what `retrieve`
would take), nDCG@10, and how far its scores move from the one-pair-per-run scores (the
padding shift of the int8 model: dynamic quantization takes its scales over the whole
batch, padding included). Variants take turns per query, so load hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.eval.metrics import ndcg_at_k  # noqa: E402
from ragline.eval.retrieval import CHUNKS_PER_DOCUMENT, DOCUMENT_DEPTH, document_ranking, load_qrels, load_queries  # noqa: E402
from ragline.retrieval.fusion import fused_with_first_stage  # noqa: E402
from ragline.retrieval.rerank import OnnxCrossEncoder, passage  # noqa: E402

# name -> (cross-encoder settings, pairs read)
VARIANTS = {
    "one pair per run, 20 pairs (default)": ({}, 20),
    "one padded batch of 20": ({"max_padding": 512, "batch_size": 20}, 20),
    "batches within 16 tokens": ({"max_padding": 16, "batch_size": 20}, 20),
    "passages cut at 256 tokens": ({"max_length": 256}, 20),
    "passages cut at 160 tokens": ({"max_length": 160}, 20),
    "10 pairs": ({}, 10),
    "10 pairs, one padded batch, 256 tokens": ({"max_padding": 512, "batch_size": 20, "max_length": 256}, 10),
}


def fused_order(scores: list[float]) -> list[int]:
    """Candidates by the RRF of their second-stage rank and first-stage rank, as `retrieve` fuses."""
    fused = fused_with_first_stage(scores)
    return sorted(range(len(scores)), key=lambda i: fused[i], reverse=True)


def judged_queries(description: str, default_limit: int):
    """The command line shared by the second-stage benchmarks: (args, queries, qrels, judged query ids)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--qrels", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=default_limit, help="first N judged queries (0: all)")
    args = parser.parse_args()
    queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    judged = [q for q in queries if any(s > 0 for s in qrels.get(q, {}).values())]
    return args, queries, qrels, judged[: args.limit] if args.limit else judged


def main() -> None:
    args, queries, qrels, judged = judged_queries(__doc__.splitlines()[0], 200)
    encoders = {name: OnnxCrossEncoder(**settings) for name, (settings, _) in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ndcg: dict[str, list[float]] = {name: [] for name in VARIANTS}
    shift: dict[str, float] = dict.fromkeys(VARIANTS, 0.0)
    first_stage: list[float] = []
    with ragline.open(args.store, retrieval={"rerank": "none"}, tracing={"enabled": False}) as rag:
        rag.retrieve("warm up", top_k=1)
        for encoder in encoders.values():
            encoder.scores("warm up", ["a passage"])
        for qid in track(judged, description="queries"):
            started = time.perf_counter()
            hits = rag.retrieve(queries[qid], top_k=DOCUMENT_DEPTH * CHUNKS_PER_DOCUMENT, rerank=False)
            first_stage.append((time.perf_counter() - started) * 1000)
            reference: list[float] | None = None
            for name, (_, pairs) in VARIANTS.items():
                head, tail = hits[:pairs], hits[pairs:]
                texts = [passage(h) for h in head]
                started = time.perf_counter()
                scores = encoders[name].scores(queries[qid], texts)
                times[name].append((time.perf_counter() - started) * 1000)
                if reference is None:
                    reference = scores
                else:
                    shift[name] = max(shift[name], *(abs(a - b) for a, b in zip(scores, reference[:pairs], strict=False)))
                order = fused_order(scores)
                ranking = document_ranking([head[i].document_id for i in order] + [h.document_id for h in tail])
                ndcg[name].append(ndcg_at_k(ranking, qrels[qid], 10).value or 0.0)
    base = statistics.median(first_stage)
    table = Table("second stage", "rerank p50 ms", "p95 ms", "retrieve p50 ms", "nDCG@10", "max score shift",
                  title=f"{len(judged)} queries; first stage p50 {base:.1f} ms")  # fmt: skip
    default = statistics.median(times["one pair per run, 20 pairs (default)"])
    for name in VARIANTS:
        ordered = sorted(times[name])
        p50 = statistics.median(ordered)
        table.add_row(f"{name} ({default / p50:.1f}x)", f"{p50:.1f}", f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f}",
                      f"{base + p50:.1f}", f"{statistics.fmean(ndcg[name]):.4f}", f"{shift[name]:.4f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
