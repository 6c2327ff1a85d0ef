"""Retrieval latency per query (query embedding included, no LLM, no rerank), per mode,
against baselines measured in the same run, plus recall@10 of an HNSW index against exact search.

    python benchmarks/retrieval_latency.py --store STORE_DIR --queries queries.jsonl [--limit 200]

STORE_DIR is an existing ragline store (e.g. the one `ragline eval retrieval` built). Baselines:
sentence-transformers' `encode` of the query (one torch thread) plus a brute-force numpy cosine
scan over every stored vector, and LlamaIndex's dense path (VectorStoreIndex retriever over the
same vectors, query embedded by sentence-transformers) when llama-index-core is installed.
ragline embeds queries through onnxruntime (`embedding.query_backend`), so both
query-embedding paths are timed too. Every variant runs once per query in turn, so load
from other processes hits them alike: compare ratios, not absolute numbers.

HNSW: `optimize()` only indexes segments above `store.hnsw_threshold` points (20k by default,
more than SciFact has), so the benchmark copies the points into a temporary store created
with `--hnsw-threshold`, optimizes it and compares its dense top 10 with the exact scan's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.components import EMBEDDING_CACHE_FILE
from ragline.ingest.embedding_cache import EmbeddingCache
from ragline.retrieval.edge_store import EdgeStore
from ragline.retrieval.store import StoredPoint


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def _llamaindex_retriever(rag, embed, points, matrix, top_k: int) -> Callable[[str], list[str]] | None:
    """LlamaIndex's default dense path: VectorStoreIndex (in-memory store) + retriever, its
    query embedded by sentence-transformers as LlamaIndex's HuggingFaceEmbedding does."""
    try:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.embeddings import BaseEmbedding
        from llama_index.core.schema import TextNode
    except ImportError:
        return None
    embedder = rag.embedder

    class SentenceTransformersEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return embed(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed([text])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    nodes = [TextNode(id_=p.id, text=p.payload.get("text", ""), embedding=row.tolist()) for p, row in zip(points, matrix)]
    index = VectorStoreIndex(nodes, embed_model=SentenceTransformersEmbedding(model_name=embedder.model_id))
    retriever = index.as_retriever(similarity_top_k=top_k)
    return lambda query: [n.node.node_id for n in retriever.retrieve(query)]


def _hnsw_store(root: Path, points, matrix, threshold: int) -> tuple[EdgeStore, int]:
    """A copy of the points in a store whose segments get HNSW; returns it and the indexed count."""
    store = EdgeStore(root / "hnsw", hnsw_threshold=threshold)
    store.ensure_collection(matrix.shape[1])
    store.upsert([StoredPoint(id=p.id, vector=row.tolist(), payload=p.payload) for p, row in zip(points, matrix)])
    store.optimize()
    return store, store._require_shard().info().indexed_vectors_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--hnsw-threshold", type=int, default=1000, help="points per segment that get HNSW")
    parser.add_argument("--torch-threads", type=int, help="torch intra-op threads for the whole run (default: torch's)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    queries = [json.loads(line)["text"] for line in args.queries.open() if line.strip()][: args.limit]
    console = Console()
    k = args.top_k
    with ragline.open(args.store, retrieval={"rerank": "none", "mmr": False}) as rag, \
            tempfile.TemporaryDirectory(prefix="ragline-hnsw-") as tmp:
        points = list(rag.store.iter_points())
        ids = [p.id for p in points]
        # The baseline's vectors come from the store's embedding cache (keyed by text hash).
        cache = EmbeddingCache(args.store / EMBEDDING_CACHE_FILE)
        cached = cache.get(rag.embedder.model_id, (p.payload["content_hash"] for p in points))
        cache.close()
        matrix = np.asarray([cached[p.payload["content_hash"]] for p in points], dtype=np.float32)
        hnsw, indexed = _hnsw_store(Path(tmp), points, matrix, args.hnsw_threshold)
        console.print(f"{len(points)} points, {len(queries)} queries, torch threads {torch.get_num_threads()}, "
                      f"HNSW copy (threshold {args.hnsw_threshold}): {indexed} vectors indexed (dense + sparse)")
        threads = torch.get_num_threads()

        def embed_one_thread(query: str) -> list[float]:
            """sentence-transformers' encode, as plain code and LlamaIndex embed a query."""
            torch.set_num_threads(1)
            try:
                return rag.embedder.embed([query])[0]
            finally:
                torch.set_num_threads(threads)

        llamaindex = _llamaindex_retriever(rag, embed_one_thread, points, matrix, k)

        def exact(vector: np.ndarray) -> list[str]:
            return [ids[i] for i in np.argsort(-(matrix @ vector))[:k]]

        variants: dict[str, Callable[[str], object]] = {
            "baseline: s-t embed + numpy exact scan": lambda q: exact(np.asarray(embed_one_thread(q), np.float32)),
            "query embedding only (ragline, onnxruntime)": rag.embedder.embed_query,
            "query embedding only (sentence-transformers, 1 torch thread)": embed_one_thread,
            **({"LlamaIndex dense (VectorStoreIndex)": llamaindex} if llamaindex else {}),
            **{f"ragline {mode}": (lambda q, m=mode: rag.retrieve(q, top_k=k, mode=m)) for mode in ("dense", "sparse", "hybrid")},
        }
        for run in variants.values():  # warm caches and models
            run(queries[0])
        timings: dict[str, list[float]] = {name: [] for name in variants}
        search_only = {"exact store (dense search only)": [], "HNSW store (dense search only)": []}
        recall = {"exact store (dense search only)": [], "HNSW store (dense search only)": []}
        for query in queries:
            for name, run in variants.items():
                start = time.perf_counter()
                run(query)
                timings[name].append(time.perf_counter() - start)
            vector = np.asarray(rag.embedder.embed_query(query), np.float32)
            truth = set(exact(vector))
            for name, store in (("exact store (dense search only)", rag.store), ("HNSW store (dense search only)", hnsw)):
                start = time.perf_counter()
                found = {p.id for p in store.search(vector.tolist(), k)}
                search_only[name].append(time.perf_counter() - start)
                recall[name].append(len(truth & found) / len(truth))
        hnsw.close()

    base_p50 = _percentiles(timings["baseline: s-t embed + numpy exact scan"])[0]
    table = Table("variant", "p50 ms", "p95 ms", "p50 vs baseline", f"recall@{k} vs exact")
    for name, samples in {**timings, **search_only}.items():
        p50, p95 = _percentiles(samples)
        shown = f"{statistics.mean(recall[name]):.4f}" if name in recall else "-"
        table.add_row(name, f"{p50 * 1e3:.1f}", f"{p95 * 1e3:.1f}", f"{p50 / base_p50:.2f}x", shown)
    console.print(table)


if __name__ == "__main__":
    main()
