"""The quality check for ranking changes: retrieval variants side by side on three data sets.

One run scores every variant on sec10q-dev, SciFact dev and PubMedQA dev, and times it.

    python benchmarks/ranking_ablation.py [--datasets sec10q,scifact,pubmedqa] [--limit N]
        [--stores DIR] [--variants JSON] [--data DIR] [--json]

A variant is a set of config overrides for `ragline.open` (sections as dicts). Variants with
the same `[chunking]` share one store per data set, ingested once per run and created by
the first variant that opens it (list a `rerank = "vectors"` variant first, so the store
holds second-stage vectors; the others read past them); stores live
under DIR (default: a temporary folder) and are reused while unchanged, so a second run
embeds nothing (SciFact's 5,183 abstracts take ~8 minutes per chunking setting here).
`--limit N` asks N questions per data set, evenly spaced through the file; the corpora are
always ingested whole. `--variants '{"name": {"retrieval": {"rerank": "none"}}, ...}'`
replaces the built-in variants. Wall time per variant is the question loop's alone (models
loaded first); ingest times are printed below the table.

- sec10q-dev (8 10-Q PDFs, 81 questions): hit@k, one of the first k chunks comes from a
  filing the question's `Source Docs` glob names (as in sec10q_documents.py); hit@1 on
  single-document questions, hit@5 and hit@1 on all.
- SciFact dev (809 judged queries): nDCG@10 as `ragline eval retrieval` scores it (the
  same `retrieve` depth, documents at their best chunk's rank: ragline.eval.retrieval).
- PubMedQA dev (500 questions, their contexts the corpus): hit@3, the question's own
  abstract among the first 3 chunks.

Issue #16's targets: sec10q single-document hit@1 >= 0.85, hit@5 >= 0.97; SciFact
nDCG@10 >= 0.745 (the default's score in the README: no loss).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline
from ragline.connectors.dataset import DatasetConfig, DatasetConnector
from ragline.eval.datasets import CorpusConnector, load_dataset
from ragline.eval.metrics import hit_at_k
from ragline.eval.retrieval import evaluate, load_qrels, load_queries

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COMMON = {"tracing": {"enabled": False}}
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "before": {"chunking": {"context_headers": False}, "retrieval": {"target_documents": False}},
    "headers": {"chunking": {"context_headers": True}, "retrieval": {"target_documents": False}},
    "headers + targeting": {"chunking": {"context_headers": True}, "retrieval": {"target_documents": True}},
    "headers + targeting, no rerank": {
        "chunking": {"context_headers": True}, "retrieval": {"target_documents": True, "rerank": "none"},
    },
}  # fmt: skip
# (data set, metric, column header, issue #16 target)
COLUMNS = [
    ("sec10q", "single-doc hit@1", "sec10q 1-doc hit@1", 0.85),
    ("sec10q", "hit@5", "sec10q hit@5", 0.97),
    ("sec10q", "hit@1", "sec10q hit@1", None),
    ("scifact", "nDCG@10", "SciFact nDCG@10", 0.745),
    ("pubmedqa", "hit@3", "PubMedQA hit@3", None),
]
Tick = Callable[[int], Callable[[], None]]  # given the number of questions, returns "one more done"


def evenly(items: Sequence, limit: int | None) -> list:
    """`limit` items spread over the whole sequence (the files group questions by type)."""
    if not limit or limit >= len(items):
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def pubmedqa_dataset(data: Path):
    return load_dataset(data / "pubmedqa-dev" / "pqal_dev.json", "pubmedqa")  # all of it: the corpus too


def ingest(rag, dataset: str, data: Path) -> ragline.IngestReport:
    if dataset == "sec10q":
        return rag.ingest(data / "sec10q-dev" / "docs")
    if dataset == "scifact":
        return rag.ingest(DatasetConnector(DatasetConfig(path=data / "scifact-dev" / "corpus.jsonl", id_field="_id")))
    # What ragline.eval.harness.ingest_corpus does, without a Suite, and keeping the report.
    return rag.ingest(CorpusConnector(pubmedqa_dataset(data), "eval:ranking-ablation:pubmedqa"))


def score_sec10q(rag, data: Path, limit: int | None, tick: Tick) -> dict[str, Any]:
    rows = evenly(list(csv.DictReader((data / "sec10q-dev" / "qna_data.csv").open(encoding="utf-8"))), limit)
    done, ranks, single = tick(len(rows)), [], []
    for row in rows:
        glob = row["Source Docs"].strip()
        hits = rag.retrieve(row["Question"], top_k=5)
        first = next((rank for rank, hit in enumerate(hits, start=1) if fnmatch(Path(hit.document_id).name, glob)), 0)
        ranks.append(first)
        if row["Question Type"].startswith("Single-Doc"):
            single.append(first)
        done()

    def rate(found: list[int], k: int) -> float | None:
        return sum(1 <= rank <= k for rank in found) / len(found) if found else None

    return {"single-doc hit@1": rate(single, 1), "hit@5": rate(ranks, 5), "hit@1": rate(ranks, 1),
            "questions": len(ranks), "single-doc questions": len(single)}  # fmt: skip


def score_scifact(rag, data: Path, limit: int | None, tick: Tick) -> dict[str, Any]:
    folder = data / "scifact-dev"
    queries, qrels = load_queries(folder / "queries.jsonl"), load_qrels(folder / "qrels.tsv")
    judged = evenly([qid for qid in queries if any(score > 0 for score in qrels.get(qid, {}).values())], limit)
    result = evaluate(
        lambda text, depth: [hit.document_id for hit in rag.retrieve(text, top_k=depth)],  # as `ragline eval retrieval`
        {qid: queries[qid] for qid in judged}, qrels, mode=rag.config.retrieval.mode,
        rerank=rag.config.retrieval.rerank != "none", tick=tick(len(judged)),
    )  # fmt: skip
    return {"nDCG@10": result.ndcg_at_10, "MRR@10": result.mrr_at_10, "questions": result.queries}


def score_pubmedqa(rag, data: Path, limit: int | None, tick: Tick) -> dict[str, Any]:
    items = evenly(pubmedqa_dataset(data).items, limit)
    done, hits = tick(len(items)), []
    for item in items:
        ranking = [hit.document_id for hit in rag.retrieve(item.question, top_k=3)]
        hits.append(hit_at_k(ranking, item.relevant_document_ids, 3).value)
        done()
    return {"hit@3": sum(hits) / len(hits), "questions": len(hits)}


SCORERS = {"sec10q": score_sec10q, "scifact": score_scifact, "pubmedqa": score_pubmedqa}


def store_dir(root: Path, dataset: str, overrides: dict) -> Path:
    """One store per data set and chunking setting: only `[chunking]` changes what is stored."""
    chunking = overrides.get("chunking", {})
    return root / "-".join([dataset, *(f"{key}-{json.dumps(value)}" for key, value in sorted(chunking.items()))])


def parse_variants(text: str | None) -> dict[str, dict]:
    try:
        variants = VARIANTS if text is None else json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--variants: not JSON ({exc})") from None
    for name, overrides in variants.items():  # fail before any ingest, not after the first data set
        try:
            ragline.load_config(**{**COMMON, **overrides})
        except ragline.ConfigError as exc:
            raise SystemExit(f"variant {name!r}: {exc}") from None
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sec10q,scifact,pubmedqa", help="comma-separated subset")
    parser.add_argument("--limit", type=int, default=None, help="questions per data set (default: all)")
    parser.add_argument("--stores", type=Path, default=None, help="store folder, reused across runs")
    parser.add_argument("--variants", default=None, help='JSON {"name": {section: {...}}}, replacing VARIANTS')
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding sec10q-dev, scifact-dev, pubmedqa-dev")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    args = parser.parse_args()
    datasets = [name.strip() for name in args.datasets.split(",") if name.strip()]
    if unknown := set(datasets) - set(SCORERS):
        parser.error(f"unknown data set(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCORERS)}")
    variants = parse_variants(args.variants)
    root = args.stores or Path(tempfile.mkdtemp(prefix="ragline-ablation-"))
    results: dict[str, dict[str, dict]] = {name: {} for name in variants}
    ingests: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        for dataset in datasets:
            ingested: set[Path] = set()
            for name, overrides in variants.items():
                store = store_dir(root, dataset, overrides)
                with ragline.open(store, **{**COMMON, **overrides}) as rag:
                    if store not in ingested:
                        task = bar.add_task(f"ingest {store.name}", total=None)
                        started = time.perf_counter()
                        report = ingest(rag, dataset, data=args.data)
                        ingests.append({"dataset": dataset, "store": str(store), "seconds": round(time.perf_counter() - started, 3),
                                        **report.model_dump(mode="json", exclude={"errors"})})  # fmt: skip
                        bar.remove_task(task)
                        ingested.add(store)
                        if report.failed:
                            bar.console.print(f"[yellow]warning:[/] {store.name}: {report.failed} failed to ingest")
                    rag.retrieve("warm-up", top_k=1)  # load the embedder and the reranker outside the timer

                    def tick(total: int, label: str = f"{dataset} · {name}") -> Callable[[], None]:
                        task = bar.add_task(label, total=total)
                        return lambda: bar.advance(task)

                    started = time.perf_counter()
                    metrics = SCORERS[dataset](rag, args.data, args.limit, tick)
                    results[name][dataset] = {**metrics, "seconds": round(time.perf_counter() - started, 3)}
    if args.json:
        targets = {f"{d} {metric}": target for d, metric, _, target in COLUMNS if target is not None}
        print(json.dumps({"variants": [{"name": name, "overrides": variants[name], **results[name]} for name in variants],
                          "ingests": ingests, "targets": targets, "limit": args.limit, "stores": str(root)}, indent=2))  # fmt: skip
        return
    shown = [column for column in COLUMNS if column[0] in datasets]
    headers = [header for _, _, header, _ in shown] + [f"{dataset} s" for dataset in datasets]
    asked = f"{args.limit} questions per data set" if args.limit else "all questions"
    table = Table("variant", *headers, title=f"ranking ablation ({asked})")
    for name in variants:
        row = results[name]
        cells = ["-" if row[d][metric] is None else f"{row[d][metric]:.3f}" for d, metric, _, _ in shown]
        table.add_row(name, *cells, *(f"{row[d]['seconds']:.2f}" for d in datasets))
    table.add_section()
    table.add_row("[dim]issue #16 target[/]", *(f"[dim]>= {target}[/]" if target else "" for *_, target in shown))
    console = Console()
    console.print(table)
    for dataset in datasets:
        counts = {k: v for k, v in next(iter(results.values()))[dataset].items() if k.endswith("questions")}
        console.print(f"{dataset}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    for entry in ingests:
        console.print(f"ingest {Path(entry['store']).name}: {entry['added']} added, {entry['updated']} updated, "
                      f"{entry['chunks_embedded']} chunks embedded in {entry['seconds']:.1f} s")  # fmt: skip
    console.print(f"stores: {root}")


if __name__ == "__main__":
    main()
