"""Ingest speed on a BEIR corpus: ragline's first ingest and unchanged re-run against a
plain sentence-transformers `encode` of the same records, all in one process and one run.

    python benchmarks/ingest_speed.py [--limit N] [--corpus PATH] [--profile FILE]

The model is loaded once, before any timer starts, and shared by the baseline and ragline.
Run on demand; this is not a test. See benchmarks/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline  # noqa: E402
from ragline.connectors.dataset import DatasetConfig, DatasetConnector  # noqa: E402
from ragline.retrieval.embeddings import Embedder  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact-dev" / "corpus.jsonl"
BATCH_SIZE = 64


class TimedEmbedder(Embedder):
    """The shared, already-loaded model; records each call's texts and the model time."""

    def __init__(self, model):
        super().__init__()
        self.__dict__["_model"] = model
        self.seconds = 0.0
        self.calls: list[list[str]] = []

    def embed(self, texts, *, show_progress=False):
        start = time.perf_counter()
        vectors = super().embed(texts, show_progress=show_progress)
        self.seconds += time.perf_counter() - start
        self.calls.append(list(texts))
        return vectors


@dataclass
class Timing:
    seconds: float  # wall clock
    cpu: float  # this process, all threads
    others: float | None  # CPU seconds other processes used meanwhile (Linux), i.e. noise


def _busy_seconds() -> float | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, profile: cProfile.Profile | None = None):
    busy, cpu, start = _busy_seconds(), _own_cpu(), time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        result = fn()
    finally:
        if profile is not None:
            profile.disable()
    seconds, cpu = time.perf_counter() - start, _own_cpu() - cpu
    after = _busy_seconds()
    others = None if busy is None or after is None else max(after - busy - cpu, 0.0)
    return result, Timing(seconds, cpu, others)


def best_of(runs: int, *fns) -> list[tuple]:
    """Each function's fastest (result, Timing) over a few rounds, run in turn within each
    round: short timings are the most exposed to other processes, and alike to the same ones."""
    rounds = [[timed(fn) for fn in fns] for _ in range(runs)]
    return [min(column, key=lambda result: result[1].seconds) for column in zip(*rounds)]


def first_records(corpus: Path, limit: int, out: Path) -> int:
    """Copy the first `limit` non-blank lines (0: all) to `out`; the count copied."""
    count = 0
    with corpus.open("rb") as src, out.open("wb") as dst:
        for line in src:
            if not line.strip():
                continue
            dst.write(line)
            count += 1
            if count == limit:
                break
    return count


def by_characters(texts: list[str]) -> list[list[int]]:
    """The batches of a plain `encode`: texts sorted by characters, cut every BATCH_SIZE."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[start : start + BATCH_SIZE] for start in range(0, len(order), BATCH_SIZE)]


def embedded_size(model, calls: list[list[str]], batches=by_characters) -> tuple[int, int, int, int]:
    """(word pieces, padded word pieces, characters, texts truncated) the model reads for
    these calls, each cut into `batches` (index groups) padded to their longest text."""
    limit = model.max_seq_length
    pieces = padded = chars = truncated = 0
    for texts in calls:
        kept: dict[int, int] = {}
        for start in range(0, len(texts), 256):
            batch = texts[start : start + 256]
            cut = model.tokenizer(batch, truncation=True, max_length=limit, return_offsets_mapping=True)
            for i, (ids, offsets) in enumerate(zip(cut["input_ids"], cut["offset_mapping"], strict=True)):
                kept[start + i] = len(ids)
                read = max((end for _, end in offsets), default=0)
                chars += read
                truncated += len(ids) == limit and read < len(batch[i].rstrip())
        pieces += sum(kept.values())
        padded += sum(len(group) * max(kept[i] for i in group) for group in batches(texts))
    return pieces, padded, chars, truncated


@dataclass
class Results:
    docs: int
    texts: list[str]  # one per document, as the baseline encodes them
    chunk_texts: list[str]  # what ragline gave the model
    calls: list[list[str]]  # ragline's `Embedder.embed` calls
    chunks: int  # chunks written (chunks_embedded), cache hits included
    chunking: object
    timings: dict[str, Timing]
    model_seconds: float  # inside ragline's Embedder.embed
    batching: object  # how ragline's Embedder cuts a call into batches


def measure(model, corpus: Path, limit: int, profile: cProfile.Profile | None, console: Console) -> Results:
    with tempfile.TemporaryDirectory(prefix="ragline-bench-") as tmp:
        records = Path(tmp) / "corpus.jsonl"
        docs = first_records(corpus, limit, records)
        connector = DatasetConnector(DatasetConfig(path=records, id_field="_id"))
        texts = [item.text or "" for item in connector.items({})]  # "title\n\ntext", as ragline ingests it

        console.print(f"{docs} records from {corpus}: plain encode (batch {BATCH_SIZE}) ...")
        _, base = timed(lambda: model.encode(texts, batch_size=BATCH_SIZE))

        recorder = TimedEmbedder(model)
        with ragline.open(Path(tmp) / "store", embedder=recorder) as rag:
            console.print("ragline first ingest, then an unchanged re-run ...")
            first, ingest = timed(lambda: rag.ingest(connector), profile)
            (rerun, again), (_, read) = best_of(5, lambda: rag.ingest(connector), lambda: list(connector.items({})))
            chunking = rag.config.chunking
        if first.added != docs or rerun.unchanged != docs or first.failed or rerun.failed:
            raise SystemExit(f"unexpected reports: first {first}, re-run {rerun}")

    chunk_texts = [text for call in recorder.calls for text in call]
    console.print("plain encode of ragline's chunk texts ...")
    _, same = timed(lambda: model.encode(chunk_texts, batch_size=BATCH_SIZE))
    timings = {"baseline": base, "same": same, "ingest": ingest, "rerun": again, "read": read}
    return Results(docs, texts, chunk_texts, recorder.calls, first.chunks_embedded, chunking, timings,
                   recorder.seconds, recorder.batches)


def report(r: Results, model, limit: int, console: Console) -> None:
    t = r.timings
    base = t["baseline"].seconds
    runs = Table(title=f"{r.docs} SciFact records (--limit {limit}), {time.strftime('%Y-%m-%d %H:%M')}")
    for column in ("run", "seconds", "x baseline", "docs/s", "texts/s", "CPU s", "others' CPU s"):
        runs.add_column(column, justify="left" if column == "run" else "right")

    def row(name: str, timing: Timing, texts: int | None, digits: int = 2) -> None:
        others = "n/a" if timing.others is None else f"{timing.others:.1f}"
        runs.add_row(name, f"{timing.seconds:.{digits}f}", f"{timing.seconds / base:.{digits}f}",
                     f"{r.docs / timing.seconds:,.1f}", f"{texts / timing.seconds:.1f}" if texts else "",
                     f"{timing.cpu:.{digits}f}", others)

    row("plain encode of the documents (baseline)", t["baseline"], len(r.texts))
    row("plain encode of ragline's chunk texts", t["same"], len(r.chunk_texts))
    row("ragline first ingest", t["ingest"], r.chunks)
    runs.add_row("  of which in Embedder.embed", f"{r.model_seconds:.2f}", f"{r.model_seconds / base:.2f}")
    row("ragline re-run, nothing changed (best of 5)", t["rerun"], None, 3)
    row("reading the source alone (best of 5)", t["read"], None, 3)
    console.print(runs)

    sizes = Table(title=f"What the model reads (at most {model.max_seq_length} word pieces per text)")
    for column in ("", "texts", "word pieces", "padded word pieces", "characters", "texts truncated"):
        sizes.add_column(column, justify="left" if not column else "right")
    base_size = embedded_size(model, [r.texts])
    same_size = embedded_size(model, [r.chunk_texts])
    rag_size = embedded_size(model, r.calls, r.batching)
    sizes.add_row("plain encode: one text per document", f"{len(r.texts):,}", *(f"{n:,}" for n in base_size))
    sizes.add_row("plain encode: ragline's chunk texts", f"{len(r.chunk_texts):,}", *(f"{n:,}" for n in same_size))
    sizes.add_row("ragline", f"{len(r.chunk_texts):,}", *(f"{n:,}" for n in rag_size))
    console.print(sizes)

    ingest = t["ingest"].seconds
    console.print(
        f"ragline embedded {r.chunks:,} chunks of up to {r.chunking.chunk_size} tokens for {r.docs:,} documents "
        f"({r.chunks / r.docs:.2f} per document). It embeds ALL of each document's text, in chunks overlapping "
        f"by {r.chunking.chunk_overlap} tokens, while the plain encode of the documents truncates each at the "
        f"model's {model.max_seq_length} word pieces: ragline reads {rag_size[0] / base_size[0]:.2f}x the word "
        f"pieces, at {(rag_size[0] / ingest) / (base_size[0] / base):.2f}x the baseline's word pieces per second. "
        f"Against a plain encode of the very same chunk texts, ragline's first ingest takes "
        f"{ingest / t['same'].seconds:.2f}x the time.\n"
        f"Unchanged re-run: {t['rerun'].seconds:.3f} s; reading and hashing the source alone takes "
        f"{t['read'].seconds:.3f} s.\n"
        "\"others' CPU\": CPU seconds other processes used meanwhile; when it is a sizeable share of a run's "
        "seconds (2 cores here), that timing is inflated and ratios between rows are only indicative."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="first N records of the corpus; 0 = all")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="BEIR corpus.jsonl")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the first ingest here")
    args = parser.parse_args()
    console = Console(width=120)

    embedder = Embedder()
    model, load = timed(lambda: embedder._model)
    model.encode(["warm-up"], batch_size=BATCH_SIZE)
    # One-off imports (unstructured, spaCy, llama-index) are start-up cost, like the model's.
    _, imports = timed(lambda: __import__("ragline.ingest.pipeline"))
    console.print(f"excluded from every timing below: model load {load.seconds:.1f} s, "
                  f"ragline's ingest imports {imports.seconds:.1f} s")
    profile = cProfile.Profile() if args.profile else None
    results = measure(model, args.corpus, args.limit, profile, console)
    if profile is not None:
        profile.dump_stats(args.profile)
    report(results, model, args.limit, console)


if __name__ == "__main__":
    main()
