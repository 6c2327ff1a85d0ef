"""The embedded store at scale (issue #16, target 6): N synthetic MiniLM-like chunks; ingest and
HNSW build time, memory, disk, p50/p99 dense top-10 latency and recall@10 against exact search,
without and with filters, without and with scalar (int8) quantization.

    python benchmarks/scale.py --points 100000 [--queries 200] [--store DIR] [--seed 0] [--json]

Vectors: real all-MiniLM-L6-v2 chunk vectors (read-only from the embedding cache of a SciFact
store, `--source-store`; else ~2,000 SciFact abstracts embedded by `Embedder()`; cached in DIR),
split into data bases and held-out query bases. Point = normalise(data base + Gaussian noise of
expected norm `--noise`), a query likewise from a held-out base: no query is in the data. Made
batch by batch, written to DIR/scale-vectors.f32 (what the exact scans read) and upserted through
`EdgeStore.upsert`. Payload as ragline indexes it: `document_id`, `source` (10 values), `readers`.

Two stores, built one after the other (the first stays open), each phase with its wall and CPU
seconds, others' CPU, peak RSS (VmHWM, reset per phase by clear_refs) and RSS after. EdgeStore
cannot configure quantization (nor HNSW m / ef / exact search), so the int8 shard is created with
`qdrant_edge` directly: EdgeStore's own config plus ScalarQuantizationConfig(Int8, quantile 0.99,
pinned in RAM). EdgeStore then opens it (the engine keeps the persisted config) and fills,
optimizes and searches it as usual. qdrant-edge 0.9 does not rescore int8 hits by default; the
"rescore" row asks for it through the engine.

Every search runs once per query, in a new random order per query (load from others, and
numpy's BLAS threads spinning after the scan, hit all alike: compare ratios).
Baseline: a numpy exact scan over the memory-mapped vectors (RSS: search phase only). Then the
engine's exact search, HNSW through the engine as EdgeStore asks it, and EdgeStore.search top 10
unfiltered, with `source` MatchAny keeping ~10% and ~50%, and restricted by `readers` (~5%).
Recall@10 is against the numpy exact top 10 under the same filter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Self

import numpy as np
import qdrant_edge as qe
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from ragline.access.principals import READERS_FIELD
from ragline.retrieval.edge_store import EdgeStore
from ragline.retrieval.store import TIE_MARGIN, StoredPoint

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CORPUS = Path(__file__).resolve().parents[2] / "shared/data/scifact-dev/corpus.jsonl"
BATCH = 2048  # points generated (and turned into StoredPoints) at a time
SCAN_ROWS = 32768  # rows per chunk of the exact scans
K = 10
# name -> (filters, readers, mask over the (source, group) arrays)
VARIANTS = {
    "no filter": (None, None, lambda s, g: np.ones(len(s), bool)),
    "source: 1 of 10 values (~10%)": ({"source": ["s0"]}, None, lambda s, g: s == 0),
    "source: 5 of 10 values (~50%)": ({"source": [f"s{v}" for v in range(5)]}, None, lambda s, g: s < 5),
    "readers: 1 of 20 groups (~5%)": (None, {"group:g0"}, lambda s, g: g == 0),
}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> tuple[float, float]:
    """(CPU seconds of this process, busy CPU seconds of the whole machine)."""
    usage, fields = resource.getrusage(resource.RUSAGE_SELF), Path("/proc/stat").read_text().split("\n", 1)[0].split()
    busy = [int(x) for x in fields[1:9]]
    return usage.ru_utime + usage.ru_stime, (sum(busy) - busy[3] - busy[4]) / os.sysconf("SC_CLK_TCK")


class Phase:
    """Wall and CPU seconds, others' CPU seconds, peak RSS during and RSS after, in MB."""

    def __enter__(self) -> Self:
        try:  # resets VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.cpu, self.start = _cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        (own, busy), seconds = _cpu(), time.perf_counter() - self.start
        own, busy = own - self.cpu[0], busy - self.cpu[1]
        self.result = {"seconds": round(seconds, 2), "cpu_s": round(own, 1), "others_cpu_s": round(max(busy - own, 0), 1),
                       "peak_rss_mb": round(_status_mb("VmHWM")), "rss_after_mb": round(_status_mb("VmRSS"))}


def _disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files) / 2**20


def base_vectors(root: Path, source_store: Path, console: Console) -> tuple[np.ndarray, str]:
    """Real MiniLM vectors: cached, else read-only from a store's embedding cache, else embedded."""
    cache = root / "scale-base-vectors.npy"
    if cache.exists():
        return np.load(cache), f"cached {cache}"
    try:  # read-only: the store may be open by its owner; its shard is never touched
        db = sqlite3.connect(f"file:{source_store / 'embeddings.sqlite'}?mode=ro", uri=True)
        rows = db.execute("SELECT vector FROM vectors WHERE model = ? ORDER BY text_hash", [MODEL]).fetchall()
        db.close()
    except sqlite3.Error:
        rows = []
    if len(rows) >= 1000:
        vectors = np.stack([np.frombuffer(r[0], np.float32) for r in rows])
        origin = f"{len(rows)} chunk vectors from the embedding cache of {source_store}"
    else:
        from ragline.retrieval.embeddings import Embedder

        records = [json.loads(line) for line in CORPUS.open() if line.strip()][:2000]
        console.print(f"embedding {len(records)} SciFact abstracts (cached afterwards)")
        texts = [f"{r.get('title', '')}\n{r['text']}" for r in records]
        vectors, origin = np.asarray(Embedder().embed(texts), np.float32), f"{len(texts)} abstracts of {CORPUS}"
    np.save(cache, vectors)
    return vectors, origin


def perturb(bases: np.ndarray, rng: np.random.Generator, count: int, noise: float) -> np.ndarray:
    picked = bases[rng.integers(len(bases), size=count)]
    out = picked + rng.standard_normal(picked.shape, np.float32) * np.float32(noise / math.sqrt(bases.shape[1]))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def int8_shard(path: Path, dim: int, hnsw_threshold: int) -> None:
    """EdgeStore.ensure_collection's shard config plus int8 scalar quantization."""
    path.mkdir(parents=True)
    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=max(1, math.ceil(hnsw_threshold * dim * 4 / 1024))),
        quantization_config=qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned),
        wal_enabled=True,
    )
    qe.EdgeShard.create(str(path), config).close()


def fill(store: EdgeStore, chunks, sources: np.ndarray, groups: np.ndarray, progress: Progress, label: str) -> float:
    """Upserts (start, vectors) chunks through EdgeStore; returns the seconds spent in upsert."""
    task, spent = progress.add_task(label, total=len(sources)), 0.0
    for start, vectors in chunks:
        points = [StoredPoint(id=str(uuid.UUID(int=i)), vector=row.tolist(),
                              payload={"document_id": f"doc-{i // 2}", "source": f"s{sources[i]}",
                                       READERS_FIELD: [f"group:g{groups[i]}"]})
                  for i, row in enumerate(vectors, start)]
        began = time.perf_counter()
        store.upsert(points)
        spent += time.perf_counter() - began
        progress.advance(task, len(points))
    return spent


def exact_top(matrix: np.ndarray, queries: np.ndarray, masks: dict[str, np.ndarray], progress: Progress) -> dict:
    """Per variant, each query's exact top-K (global row indexes) and scores, by a chunked numpy scan."""
    best = {name: (np.full((len(queries), K), -np.inf, np.float32), np.zeros((len(queries), K), np.int64))
            for name in masks}
    task = progress.add_task("exact top 10 (numpy)", total=len(matrix))
    for start in range(0, len(matrix), SCAN_ROWS):
        scores = queries @ np.asarray(matrix[start:start + SCAN_ROWS]).T
        for name, mask in masks.items():
            masked = np.where(mask[start:start + SCAN_ROWS], scores, -np.inf)
            all_s = np.concatenate([best[name][0], masked], axis=1)
            all_i = np.concatenate([best[name][1], np.broadcast_to(np.arange(start, start + scores.shape[1]),
                                                                   scores.shape)], axis=1)
            keep = np.argpartition(-all_s, K - 1, axis=1)[:, :K]
            best[name] = (np.take_along_axis(all_s, keep, 1), np.take_along_axis(all_i, keep, 1))
        progress.advance(task, scores.shape[1])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store", type=Path, default=Path("/tmp/ragline-scale"), help="work directory (rebuilt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    parser.add_argument("--noise", type=float, default=0.3, help="expected norm of the noise added to a unit base")
    parser.add_argument("--hnsw-threshold", type=int, default=20_000, help="EdgeStore's (ragline's default 20k)")
    parser.add_argument("--source-store", type=Path, default=Path("/tmp/scifact-store"))
    parser.add_argument("--no-int8", action="store_true", help="skip the quantized store")
    args = parser.parse_args()
    console = Console(stderr=True)
    root, n = args.store, args.points
    root.mkdir(parents=True, exist_ok=True)
    real, origin = base_vectors(root, args.source_store, console)
    dim = real.shape[1]
    order = np.random.default_rng(args.seed).permutation(len(real))
    held_out = real[order[: min(args.queries, len(real) // 5)]]
    data_bases = real[order[len(held_out):]]
    queries = perturb(held_out[np.arange(args.queries) % len(held_out)], np.random.default_rng([args.seed, 0, 0]),
                      args.queries, args.noise)
    rng = np.random.default_rng([args.seed, 0, 1])
    sources, groups = rng.integers(10, size=n).astype(np.uint8), rng.integers(20, size=n).astype(np.uint8)
    vectors_file = root / "scale-vectors.f32"
    stores = {"plain": root / "scale-plain"} | ({} if args.no_int8 else {"int8": root / "scale-int8"})
    for path in stores.values():
        shutil.rmtree(path, ignore_errors=True)
    phases, info, opened = {}, {}, {}

    def generated(fh):  # the data set by batches, the same on every pass; written to fh (the exact scans')
        for b, start in enumerate(range(0, n, BATCH)):
            vectors = perturb(data_bases, np.random.default_rng([args.seed, 1, b]), min(BATCH, n - start), args.noise)
            if fh is not None:
                fh.write(vectors.tobytes())
            yield start, vectors

    with Progress(console=console, transient=args.json) as progress:
        for name, path in stores.items():
            if name == "int8":
                int8_shard(path / "qdrant", dim, args.hnsw_threshold)
            store = opened[name] = EdgeStore(path / "qdrant", hnsw_threshold=args.hnsw_threshold)
            store.ensure_collection(dim)
            with Phase() as ingest, vectors_file.open("wb") if name == "plain" else nullcontext() as fh:
                upsert_s = fill(store, generated(fh), sources, groups, progress, f"ingest {name}")
            phases[f"ingest {name}"] = ingest.result | {"upsert_s": round(upsert_s, 2)}
            task = progress.add_task(f"optimize {name} (HNSW build)", total=None)
            with Phase() as build:
                store.optimize()
            progress.remove_task(task)
            shard_info = store._require_shard().info()
            phases[f"HNSW build {name}"] = build.result
            info[name] = {"segments": shard_info.segments_count, "indexed_vectors": shard_info.indexed_vectors_count}

        matrix = np.memmap(vectors_file, np.float32, "r", shape=(n, dim))
        masks = {name: mask(sources, groups) for name, (_, _, mask) in VARIANTS.items()}
        truth = exact_top(matrix, queries, masks, progress)
        plain = opened["plain"]
        exact_params = qe.SearchParams(exact=True)

        def engine(store, params):  # as EdgeStore.search asks (payload, TIE_MARGIN extra points), plus params
            def run(q, filters, readers):
                hits = store._require_shard().query(qe.QueryRequest(
                    limit=K + TIE_MARGIN, query=qe.Query.Nearest(q.tolist(), using="dense"), params=params,
                    with_payload=True))
                return [uuid.UUID(str(h.id)).int for h in sorted(hits, key=lambda h: (-h.score, str(h.id)))[:K]]
            return run

        def ragline(store):
            return lambda q, filters, readers: [uuid.UUID(p.id).int for p in store.search(
                q.tolist(), K, filters, readers=readers)]

        runs = {("baseline: numpy exact scan", "no filter"): lambda q, f, r: np.argpartition(-(matrix @ q), K)[:K],
                ("engine exact search (engine direct)", "no filter"): engine(plain, exact_params)}
        runs[("HNSW (engine direct)", "no filter")] = engine(plain, None)
        runs |= {("HNSW (EdgeStore.search)", v): ragline(plain) for v in VARIANTS}
        if "int8" in opened:
            runs |= {("int8 HNSW (EdgeStore.search)", v): ragline(opened["int8"]) for v in VARIANTS}
            rescore = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True))
            runs[("int8 HNSW + rescore (engine direct)", "no filter")] = engine(opened["int8"], rescore)
        for (_, variant), run in runs.items():  # warm up
            run(queries[0], *VARIANTS[variant][:2])
        times = {key: [] for key in runs}
        recalls = {key: [] for key in runs}
        task = progress.add_task("searches", total=len(queries))
        with Phase() as searching:
            keys, shuffle = list(runs), np.random.default_rng([args.seed, 0, 2])
            for qi, query in enumerate(queries):  # a new order per query: no variant always follows the BLAS scan
                for key in (keys[i] for i in shuffle.permutation(len(keys))):
                    run = runs[key]
                    began = time.perf_counter()
                    found = run(query, *VARIANTS[key[1]][:2])
                    times[key].append(time.perf_counter() - began)
                    expected = set(truth[key[1]][1][qi][np.isfinite(truth[key[1]][0][qi])].tolist())
                    recalls[key].append(len(expected & set(map(int, found))) / max(len(expected), 1))
                progress.advance(task)
        phases["searches"] = searching.result
        for name, store in opened.items():  # disk once closed: optimize() leaves old segments until then
            store.close()
            info[name] |= {"disk_mb": round(_disk_mb(stores[name]), 1), "wal_mb": round(_disk_mb(store.path / "wal"), 1)}

    # How clustered the synthetic data is, beside the real vectors it comes from: mean top-1 / top-10 cosine.
    real_top = -np.sort(-(held_out @ data_bases.T), axis=1)
    synthetic_top = -np.sort(-truth["no filter"][0], axis=1)
    structure = {"real held-out vs real bases": [round(float(real_top[:, i].mean()), 3) for i in (0, K - 1)],
                 "synthetic queries vs points": [round(float(synthetic_top[:, i].mean()), 3) for i in (0, K - 1)]}
    base_p50 = statistics.median(times[("baseline: numpy exact scan", "no filter")])
    rows = []
    for (name, variant), samples in times.items():
        ordered = sorted(samples)
        p50, p99 = statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]
        rows.append({"search": name, "filter": variant, "p50_ms": round(p50 * 1e3, 2), "p99_ms": round(p99 * 1e3, 2),
                     "x_baseline_p50": round(p50 / base_p50, 3),
                     "recall_at_10": round(statistics.mean(recalls[(name, variant)]), 4)})
    result = {"points": n, "queries": len(queries), "dim": dim, "noise": args.noise, "seed": args.seed,
              "hnsw_threshold": args.hnsw_threshold, "load_average": os.getloadavg(),
              "base_vectors": {"from": origin, "data_bases": len(data_bases), "query_bases": len(held_out)},
              "stores": info, "vectors_file_mb": round(_disk_mb(vectors_file), 1), "top1_top10_cosine": structure,
              "phases": phases, "search": rows}
    if args.json:
        print(json.dumps(result))
        return
    out = Console(width=None if sys.stdout.isatty() else 150)
    out.print(f"{n:,} points x {dim} dims, {len(queries)} queries; base vectors: {origin} ({len(data_bases)} data, "
              f"{len(held_out)} query bases), noise {args.noise}, load average {os.getloadavg()[0]:.1f}")
    out.print("mean top-1 / top-10 cosine: " + "; ".join(f"{k} {v[0]} / {v[1]}" for k, v in structure.items()))
    labels = {"seconds": "seconds", "upsert_s": "in upsert s", "cpu_s": "CPU s", "others_cpu_s": "others' CPU s",
              "peak_rss_mb": "peak RSS MB", "rss_after_mb": "RSS after MB", "segments": "segments",
              "indexed_vectors": "indexed vectors", "disk_mb": "disk MB", "wal_mb": "of which WAL MB"}
    for title, data in (("phase", phases), ("store", info)):
        keys = [k for k in labels if any(k in values for values in data.values())]
        table = Table(title, *(labels[k] for k in keys))
        for name, values in data.items():
            table.add_row(name, *(str(values.get(k, "")) for k in keys))
        out.print(table)
    table = Table("search", "filter", "p50 ms", "p99 ms", "p50 x baseline", f"recall@{K}", title="top-10 searches")
    for r in rows:
        table.add_row(r["search"], r["filter"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['x_baseline_p50']:.3f}x", f"{r['recall_at_10']:.4f}")
    out.print(table)

if __name__ == "__main__":
    main()
