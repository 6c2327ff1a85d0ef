"""A live suite against a real llama.cpp server (the bundled SmolLM2 behind llama_cpp.server on
127.0.0.1): items per second with bounded concurrency through the async API, against the
sequential loop (concurrency 1) measured in the same run, on the same store and items.

    python benchmarks/eval_live.py [--limit 20] [--concurrency 4] [--max-tokens 32]

The corpus is ingested and every model warmed before any timer. The response cache is off, so
every item asks the server. On 2 cores with a one-thread server, concurrency can only overlap
retrieval and scoring with generation: the server generates one answer at a time.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests" / "support"))

import ragline  # noqa: E402
from llm_server import start_llama_server  # noqa: E402
from ragline.eval.datasets import load_dataset  # noqa: E402
from ragline.eval.harness import ingest_corpus, run_suite  # noqa: E402
from ragline.eval.suite import Suite  # noqa: E402
from ragline.llm.providers.llamacpp import bundled_gguf_path  # noqa: E402

PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa-dev" / "pqal_dev.json"
METRICS = ["token_f1", "rouge_l", "hit@3", "citation_validity", "label_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragline-eval-live-"))
    data = dict(list(json.loads(PUBMEDQA.read_text()).items())[: args.limit])
    (work / "items.json").write_text(json.dumps(data))

    def suite(concurrency: int, limit: int | None = None) -> Suite:
        dataset = {"format": "pubmedqa", "path": str(work / "items.json"), "limit": limit}
        return Suite.model_validate({"name": f"live-c{concurrency}", "dataset": dataset, "metrics": {"names": METRICS},
                                     "concurrency": concurrency})  # fmt: skip

    with start_llama_server(bundled_gguf_path()) as url:
        settings = {
            "llm": {"provider": "openai", "model": "smollm2", "base_url": url, "max_tokens": args.max_tokens},
            "cache": {"enabled": False}, "retrieval": {"rerank": "none"}, "tracing": {"enabled": False},
        }  # fmt: skip
        with ragline.open(work / "store", **settings) as rag:
            whole = suite(1)
            ingest_corpus(rag, load_dataset(whole.dataset.path, "pubmedqa"), whole)
            run_suite(rag, suite(1, limit=2))  # loads every model and warms the server
            timings = {}
            for concurrency in (1, args.concurrency):
                started = time.perf_counter()
                run, _ = run_suite(rag, suite(concurrency))
                timings[concurrency] = (time.perf_counter() - started, run)
    sequential_s = timings[1][0]
    table = Table(f"live suite, {args.limit} PubMedQA items, llama.cpp server", "items/s", "s per item", "x sequential")
    for concurrency, (seconds, run) in timings.items():
        label = "sequential loop (baseline)" if concurrency == 1 else f"concurrency {concurrency}"
        table.add_row(label, f"{run.items / seconds:.2f}", f"{seconds / run.items:.2f}", f"{sequential_s / seconds:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
