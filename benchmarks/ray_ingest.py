"""Distributed ingestion on Ray (issue #17): a first ingest of a folder with the Ray engine
(parse tasks and embedding actors on a local Ray cluster) against the local engine (the
baseline: parser processes and the model in the ingesting process), in one run.

    python benchmarks/ray_ingest.py [--docs FOLDER] [--actors 1 2] [--actor-cpus 0.5]

Each ingest writes a fresh store, so each parses and embeds everything. Starting the
cluster and loading the model (here, or in the actors) happen before the timer and are
reported on their own: they are paid once per run, whatever its size. Run on demand;
this is not a test. On a 2-core machine expect no gain: the Ray engine exists for more
machines than one; this measures what its plumbing costs on one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from ingest_speed import timed  # noqa: E402

import ragline  # noqa: E402

DEFAULT_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sec10q-dev" / "docs"


def ingest(docs: Path, **settings) -> tuple[object, object, float]:
    """(report, timing of the ingest, seconds to get ready: cluster, actors, model)."""
    with tempfile.TemporaryDirectory(prefix="ragline-bench-") as tmp, ragline.open(Path(tmp) / "store", **settings) as rag:
        started = time.perf_counter()
        _ = rag.components.ingestor.embedder.dim  # starts the cluster and loads the model, wherever it runs
        ready = time.perf_counter() - started
        report, timing = timed(lambda: rag.ingest(docs))
    if report.failed or not report.added:
        raise SystemExit(f"unexpected report: {report}")
    return report, timing, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="folder of documents (default: sec10q-dev)")
    parser.add_argument("--actors", type=int, nargs="*", default=[1], help="embedding actor counts to run")
    parser.add_argument("--actor-cpus", type=float, default=0.5, help="CPUs per actor (ray.actor_cpus)")
    args = parser.parse_args()
    console = Console(width=120)

    console.print("local engine (baseline) ...")
    base_report, base, base_ready = ingest(args.docs)
    console.print(f"  {base.seconds:.1f} s")
    runs = []
    for actors in args.actors:
        console.print(f"ray engine, local cluster, {actors} embedding actor(s) of {args.actor_cpus:g} CPU ...")
        ray = {"embed_actors": actors, "actor_cpus": args.actor_cpus}
        report, timing, ready = ingest(args.docs, ingest={"engine": "ray"}, ray=ray)
        if (report.added, report.chunks_embedded) != (base_report.added, base_report.chunks_embedded):
            raise SystemExit(f"the engines disagree: {report} vs {base_report}")
        runs.append((actors, timing, ready))
        console.print(f"  {timing.seconds:.1f} s ({timing.seconds / base.seconds:.2f} x baseline)")

    table = Table(title=f"{base_report.added} documents, {base_report.chunks_embedded:,} chunks, "
                        f"{time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    for column in ("engine", "ready s", "ingest s", "chunks/s", "x baseline", "CPU s (this process)"):
        table.add_column(column, justify="left" if column == "engine" else "right")

    def row(name: str, timing, ready: float) -> None:
        table.add_row(name, f"{ready:.1f}", f"{timing.seconds:.1f}", f"{base_report.chunks_embedded / timing.seconds:.1f}",
                      f"{timing.seconds / base.seconds:.2f}", f"{timing.cpu:.1f}")  # fmt: skip

    row("local (baseline)", base, base_ready)
    for actors, timing, ready in runs:
        row(f"ray, {actors} actor(s) x {args.actor_cpus:g} CPU", timing, ready)
    console.print(table)
    console.print("\"ready\": before the timer (the local model load; for Ray also the cluster start and the actors' "
                  "model load). \"x baseline\" > 1 is slower.")  # fmt: skip


if __name__ == "__main__":
    main()
