"""Query latency through `ragline serve` against in-process, and while an ingest runs.

    python benchmarks/serve_latency.py [--docs 1000] [--extra 300] [--queries 200]

On one store of SciFact documents (built first, not timed), with reranking off so the
numbers show the path, not the cross-encoder:

1. `rag.retrieve` in-process (the baseline) and the same queries through a `ragline serve`
   subprocess on 127.0.0.1 (`RemoteRag` over HTTP, keep-alive): p50 / p99 and the ratio.
2. Query latency while `--extra` more documents are ingested: through the server (its runs
   leave `optimize()` to an idle moment), and in-process with `rag.ingest` in a thread, which
   ends with the engine's `optimize()` holding the GIL. Both stores use a low
   `hnsw_threshold` so that optimize has real HNSW work to do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests" / "support"))

from ragline_server import served

import ragline
from ragline.connectors.dataset import DatasetConfig, DatasetConnector

SCIFACT = ROOT.parent / "shared" / "data" / "scifact-dev"
HNSW_THRESHOLD = 2_000


def _split(work: Path, docs: int, extra: int) -> tuple[Path, Path]:
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").split("\n")
    base, more = work / "base.jsonl", work / "extra.jsonl"
    base.write_text("\n".join(lines[:docs]) + "\n", encoding="utf-8")
    more.write_text("\n".join(lines[docs:docs + extra]) + "\n", encoding="utf-8")
    return base, more


def _pcts(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


def _timed(retrieve, questions: list[str]) -> list[float]:
    samples = []
    for question in questions:
        started = time.perf_counter()
        retrieve(question)
        samples.append(time.perf_counter() - started)
    return samples


def _while(retrieve, questions: list[str], busy: threading.Event) -> list[float]:
    """Query in a loop while `busy` is set (at least once)."""
    samples, i = [], 0
    while busy.is_set() or not samples:
        started = time.perf_counter()
        retrieve(questions[i % len(questions)])
        samples.append(time.perf_counter() - started)
        i += 1
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--extra", type=int, default=300)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragline-serve-bench-"))
    base, more = _split(work, args.docs, args.extra)
    questions = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").read_text().splitlines()[: args.queries]]
    settings = {"retrieval": {"rerank": "none"}, "tracing": {"enabled": False}, "store": {"hnsw_threshold": HNSW_THRESHOLD}}
    store = work / "store"
    with ragline.open(store, **settings) as rag:
        rag.ingest(DatasetConnector(DatasetConfig(path=base)))
        embedder = rag.embedder
        local = _timed(lambda q: rag.retrieve(q, top_k=10), questions)
    copy = work / "store-copy"
    shutil.copytree(store, copy)

    config = work / "ragline.toml"
    config.write_text(f'[retrieval]\nrerank = "none"\n[store]\nhnsw_threshold = {HNSW_THRESHOLD}\n[tracing]\nenabled = false\n'
                      f'[[sources]]\nkind = "dataset"\nname = "extra"\npath = "{more}"\n')  # fmt: skip
    with served(store, "--config", str(config), "--no-schedules") as server, ragline.connect(server.url) as client:
        while not client.health()["models_loaded"]:  # the server loads its models in the background
            time.sleep(0.5)
        client.retrieve(questions[0])  # warm the connection
        remote = _timed(lambda q: client.retrieve(q, top_k=10), questions)
        run = httpx.post(f"{server.url}/v1/ingest", json={"source": "extra"}, timeout=30).json()["runs"][0]
        busy = threading.Event()
        busy.set()

        def wait_for_run() -> None:
            while httpx.get(f"{server.url}/v1/runs/{run['id']}", timeout=30).json()["status"] == "running":
                time.sleep(0.2)
            busy.clear()

        waiter = threading.Thread(target=wait_for_run)
        waiter.start()
        during_server = _while(lambda q: client.retrieve(q, top_k=10), questions, busy)
        waiter.join()

    with ragline.open(copy, embedder=embedder, **settings) as rag:
        rag.retrieve(questions[0])
        busy = threading.Event()
        busy.set()

        def ingest_then_optimize() -> None:
            rag.ingest(DatasetConnector(DatasetConfig(path=more)))  # ends with optimize()
            busy.clear()

        worker = threading.Thread(target=ingest_then_optimize)
        worker.start()
        during_local = _while(lambda q: rag.retrieve(q, top_k=10), questions, busy)
        worker.join()

    table = Table(f"retrieve latency, {args.docs} SciFact docs (+{args.extra} ingested), no rerank",
                  "queries", "p50 ms", "p99 ms", "p50 x in-process", "p99 x in-process")  # fmt: skip
    base_p50, base_p99 = _pcts(local)
    rows = [("in-process (baseline)", local), ("through ragline serve", remote),
            ("server, during an ingest (optimize deferred)", during_server),
            ("in-process, during rag.ingest + optimize()", during_local)]  # fmt: skip
    for label, samples in rows:
        p50, p99 = _pcts(samples)
        table.add_row(label, str(len(samples)), f"{p50:.2f}", f"{p99:.2f}", f"{p50 / base_p50:.2f}", f"{p99 / base_p99:.2f}")
    Console().print(table)
    print(f"worst query during the in-process ingest + optimize: {max(during_local) * 1000:.0f} ms; "
          f"through the server during its ingest: {max(during_server) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
