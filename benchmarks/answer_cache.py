"""A repeated question: the answer cache (in front of retrieval) against the response cache
alone (behind retrieval and reranking), measured in the same run. Goal: cached answer p50
under 5 ms.

    python benchmarks/answer_cache.py [--store STORE_DIR --queries queries.jsonl] [--limit 50]

Without --store, `samples/` is ingested into a temporary store (not timed) and a few
questions about it are asked. With --store (e.g. the SciFact store `ragline eval retrieval`
built) the BEIR queries file gives the questions. The model is a scripted FakeProvider, so
the numbers measure ragline. Each question is asked once to fill both caches (not timed),
then `--rounds` times with the answer cache, then as often with `[cache] answers = false`
(baseline: a response-cache hit after a full retrieve and rerank). The embedded store has
one opener at a time, so the two run one after the other on the same loaded models.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline
from ragline.llm.fake import FakeProvider

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_QUESTIONS = [
    "How many days of paid leave do new employees get?",
    "Who do I contact about a security incident?",
    "What does the onboarding guide say about the first week?",
    "Which products does the company sell?",
    "How often must passwords be changed?",
]


def _questions(path: Path | None, limit: int) -> list[str]:
    if path is None:
        return SAMPLE_QUESTIONS[:limit]
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()][:limit]


def _timed(ask, questions: list[str], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        for question in questions:
            started = time.perf_counter()
            answer = ask(question)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.cached, "the benchmark measures cache hits"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="An existing store (default: samples/ in a temporary one).")
    parser.add_argument("--queries", type=Path, help="BEIR queries.jsonl for --store.")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragline-answer-cache-"))
    store = work / "store"
    if args.store:
        shutil.copytree(args.store, store)
    else:
        with ragline.open(store) as rag:
            rag.ingest(ROOT / "samples")
    questions = _questions(args.queries if args.store else None, args.limit)
    model = FakeProvider(lambda request: "An answer from the first source [1].")
    common = {"tracing": {"enabled": False}}
    with ragline.open(store, provider=model, **common) as rag:
        embedder = rag.embedder
        for question in questions:  # fill both caches; loads every model
            rag.query(question)
        remembered = _timed(rag.query, questions, args.rounds)
    with ragline.open(store, provider=model, embedder=embedder, cache={"answers": False}, **common) as rag:
        baseline = _timed(rag.query, questions, args.rounds)
    shutil.rmtree(work, ignore_errors=True)

    def row(name: str, times: list[float]) -> list[str]:
        times = sorted(times)
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        return [name, f"{statistics.median(times):.2f}", f"{p95:.2f}", str(len(times))]

    table = Table("path", "p50 ms", "p95 ms", "asks", title=f"repeated questions ({len(questions)} questions)")
    table.add_row(*row("response cache only (baseline)", baseline))
    table.add_row(*row("answer cache", remembered))
    console = Console()
    console.print(table)
    ratio = statistics.median(baseline) / statistics.median(remembered)
    console.print(f"answer cache p50 is {ratio:.0f}x faster than the baseline (goal: p50 < 5 ms)")


if __name__ == "__main__":
    main()
