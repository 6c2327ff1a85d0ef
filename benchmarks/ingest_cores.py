"""PDF ingest on every core (issue #16, target 4): ragline's first ingest of a folder of
PDFs with parser processes, against the same ingest parsing in its own process (the
baseline, `parse_workers = 0`) and against the two stages alone, all in one run.

    python benchmarks/ingest_cores.py [--docs FOLDER] [--workers N ...]

The model is loaded once, before any timer, and shared by every run; each ingest writes a
fresh store (so each embeds everything: no embedding cache is shared). "embedding alone" is
`Embedder.embed` of exactly the texts ragline embedded, in one call; "parsing alone" is
`parse_file` of each document in turn, in this process. Run on demand; this is not a test.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from ingest_speed import TimedEmbedder, timed  # noqa: E402

import ragline  # noqa: E402
from ragline.ingest.parser_processes import default_workers  # noqa: E402
from ragline.ingest.parsing import parse_file  # noqa: E402
from ragline.retrieval.embeddings import Embedder  # noqa: E402

DEFAULT_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sec10q-dev" / "docs"


class WorkerMemory:
    """The largest peak resident set (VmHWM) of any parser process, sampled while they run
    (a child's ru_maxrss would count the parent's pages it shared between fork and exec)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.25):
            for entry in Path("/proc").iterdir():
                try:
                    if b"ragline.ingest.parse_worker" not in (entry / "cmdline").read_bytes():
                        continue
                    status = (entry / "status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()


def ingest(model, docs: Path, workers: int, after: float) -> tuple[object, object, list[str], float]:
    recorder = TimedEmbedder(model)
    settings = {"parse_workers": workers, "parse_processes_after_seconds": after}
    with tempfile.TemporaryDirectory(prefix="ragline-bench-") as tmp:
        with ragline.open(Path(tmp) / "store", embedder=recorder, ingest=settings) as rag:
            report, timing = timed(lambda: rag.ingest(docs))
    if report.failed or not report.added:
        raise SystemExit(f"unexpected report: {report}")
    return report, timing, [text for call in recorder.calls for text in call], recorder.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="folder of documents (default: sec10q-dev)")
    parser.add_argument("--workers", type=int, nargs="*", default=[default_workers()],
                        help="parser process counts to run (default: one per CPU)")  # fmt: skip
    parser.add_argument("--after", type=float, default=2.0, help="parse_processes_after_seconds (default 2)")
    args = parser.parse_args()
    console = Console(width=120)

    model = Embedder()._model
    model.encode(["warm-up"])
    paths = sorted(p for p in args.docs.iterdir() if p.is_file())
    console.print(f"{len(paths)} documents in {args.docs}; {default_workers()} CPUs")

    console.print("ragline first ingest, parsing in this process (baseline) ...")
    base_report, base, texts, base_model = ingest(model, args.docs, 0, args.after)
    console.print("parsing alone ...")
    _, parsing = timed(lambda: [parse_file(p) for p in paths])
    console.print(f"embedding alone ({len(texts):,} texts) ...")
    embedder = Embedder()
    embedder.__dict__["_model"] = model
    _, embedding = timed(lambda: embedder.embed(texts))
    runs = []
    for workers in args.workers:
        console.print(f"ragline first ingest, {workers} parser processes ...")
        with WorkerMemory() as memory:
            report, timing, _, model_seconds = ingest(model, args.docs, workers, args.after)
        runs.append((workers, report, timing, model_seconds, memory.peak_mb))

    table = Table(title=f"{base_report.added} documents, {base_report.chunks_embedded:,} chunks, "
                        f"{time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    for column in ("run", "seconds", "x embedding alone", "x baseline", "CPU s (this process)", "others' CPU s"):
        table.add_column(column, justify="left" if column == "run" else "right")

    def row(name: str, timing) -> None:
        others = "n/a" if timing.others is None else f"{timing.others:.1f}"
        table.add_row(name, f"{timing.seconds:.1f}", f"{timing.seconds / embedding.seconds:.2f}",
                      f"{timing.seconds / base.seconds:.2f}", f"{timing.cpu:.1f}", others)

    row("embedding alone", embedding)
    row("parsing alone (one process)", parsing)
    row("first ingest, parsing in-process (baseline)", base)
    for workers, _, timing, _, _ in runs:
        row(f"first ingest, {workers} parser processes", timing)
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for workers, _, _, model_seconds, children in runs:
        console.print(f"{workers} parser processes: {model_seconds:.1f} s inside Embedder.embed; "
                      f"largest parser process {children:.0f} MB")  # fmt: skip
    console.print(f"peak memory of this process (model, stores, all runs): {peak:.0f} MB; baseline spent "
                  f"{base_model:.1f} s inside Embedder.embed.\n"
                  "\"others' CPU\" counts the parser processes too (they are other processes).")  # fmt: skip


if __name__ == "__main__":
    main()
