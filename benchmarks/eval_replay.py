"""Eval harness overhead: a PubMedQA suite recorded once, then replayed (no model call), with
the time per item split into answering (retrieval + replayed model + harness) and scoring
(the metrics alone, re-run over the stored answers). Goal: under 20 ms per item without
model-based metrics, with the metrics, not I/O, dominating.

    python benchmarks/eval_replay.py [--limit 500] [--concurrency 4]

The model is a scripted FakeProvider for the recording (the numbers measure ragline, not a
model). The corpus is ingested into a temporary store first (not timed). Baseline in the
same run: the same items answered by a plain sequential loop over `rag.run_pipeline`
(asking the scripted model directly: a cassette answers each recorded call once).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.eval.datasets import load_dataset  # noqa: E402
from ragline.eval.harness import ingest_corpus, run_suite  # noqa: E402
from ragline.eval.item_metrics import score_item  # noqa: E402
from ragline.eval.suite import Suite  # noqa: E402
from ragline.llm.fake import FakeProvider  # noqa: E402

PUBMEDQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pubmedqa-dev" / "pqal_dev.json"
METRICS = ["token_f1", "rouge_l", "exact_match", "hit@3", "ndcg@3", "citation_validity", "label_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragline-eval-bench-"))
    entries = json.loads(PUBMEDQA.read_text())
    answers = {e["QUESTION"]: f"{e['final_decision'].capitalize()}. {e['LONG_ANSWER']} [1]" for e in entries.values()}
    fake = FakeProvider(lambda request: answers.get(request.messages[-1].content.strip(), "I don't know."))
    suite = Suite.model_validate({
        "name": "bench", "dataset": {"format": "pubmedqa", "path": str(PUBMEDQA), "limit": args.limit},
        "metrics": {"names": METRICS}, "concurrency": args.concurrency,
    })  # fmt: skip
    cassette, store = work / "run.jsonl", work / "store"
    common = {"cache": {"enabled": False}, "retrieval": {"rerank": "none"}, "tracing": {"enabled": False}}
    with ragline.open(store, provider=fake, replay={"record": str(cassette)}, **common) as rag:
        dataset = load_dataset(PUBMEDQA, "pubmedqa", limit=args.limit)
        ingest_corpus(rag, dataset, suite)
        run_suite(rag, suite)  # the recording (also warms every model)
    with ragline.open(store, provider=FakeProvider(), replay={"replay": str(cassette)}, **common) as rag:
        started = time.perf_counter()
        replayed, items = run_suite(rag, suite)
        harness_s = time.perf_counter() - started
    with ragline.open(store, provider=fake, **common) as rag:  # the cassette is spent: the baseline asks the fake
        started = time.perf_counter()
        pipeline = rag.get_pipeline("default")
        answered = [rag.run_pipeline(pipeline, item.question) for item in dataset.items]
        loop_s = time.perf_counter() - started
        started = time.perf_counter()
        for item, answer in zip(dataset.items, answered):
            score_item(item, answer, METRICS, dataset.labels)
        scoring_s = time.perf_counter() - started
    n = len(items)
    table = Table(f"replayed suite, {n} PubMedQA items, {len(METRICS)} metrics", "ms per item", "x sequential loop")
    table.add_row(f"harness (concurrency {args.concurrency})", f"{harness_s / n * 1000:.1f}", f"{harness_s / loop_s:.2f}")
    table.add_row("sequential run_pipeline loop (baseline)", f"{loop_s / n * 1000:.1f}", "1.00")
    table.add_row("metrics alone", f"{scoring_s / n * 1000:.2f}", f"{scoring_s / loop_s:.3f}")
    Console().print(table)
    print(f"run {replayed.run_id}: " + ", ".join(f"{k} {v.mean:.3f}" for k, v in replayed.metrics.items() if v.mean is not None))


if __name__ == "__main__":
    main()
