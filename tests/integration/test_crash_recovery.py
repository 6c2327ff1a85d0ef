"""kill -9 of a real ingest process between each pair of durable writes, then a re-run:
the store and ledger must equal a clean ingest of the same corpus (same point ids, same
payloads, same counts, no failed document recorded as done)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

import ragline

# Small batches, so a failpoint with @N lands in the middle of a run.
SMALL_BATCHES = {"RAGLINE_INGEST__BATCH_CHUNKS": "3"}


def _write_corpus(folder, version: int) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(12):
        if version == 2 and i == 11:
            continue  # deleted in v2
        revision = "revised" if version == 2 and i in (1, 2, 4, 6, 7, 9) else "original"
        (folder / f"note-{i:02d}.md").write_text(
            f"# Note {i}\n\nThis is the {revision} note number {i} about topic {i * 7 % 5}.\n\n"
            f"It has a second paragraph mentioning project code PX-{i:03d} and its {revision} owner.\n"
        )
    if version == 2:
        for i in (12, 13, 14, 15):
            (folder / f"note-{i:02d}.md").write_text(f"# Note {i}\n\nA note added in version two, number {i}.\n")


def _snapshot(store_dir, embedder):
    with ragline.open(store_dir, embedder=embedder) as rag:
        points = {p.id: (p.payload["document_id"], p.payload["text"]) for p in rag.store.iter_points()}
        summaries = [(s.source, s.documents, s.chunks) for s in rag.sources()]
        pending = (rag.ledger.pending_deletes(), rag.ledger.unowned_pending_writes())
    return points, summaries, pending


def _ingest(store_dir, corpus, embedder, **options):
    with ragline.open(store_dir, embedder=embedder) as rag:
        return rag.ingest(corpus, **options)


@pytest.mark.parametrize("after_crash", ["rerun-same", "source-reverted"])
@pytest.mark.parametrize(
    "failpoint",
    ["ingest.after_upsert@1", "ingest.after_upsert@3", "ingest.after_commit@2", "ingest.after_delete@1"],
)
def test_kill_at_failpoint_then_rerun_converges(tmp_path, embedder, failpoint, after_crash):
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    _write_corpus(corpus, 1)
    assert _ingest(store, corpus, embedder).added == 12
    v1_snapshot = _snapshot(store, embedder)
    _write_corpus(corpus, 2)
    (corpus / "note-11.md").unlink()

    crashed = subprocess.run(
        [sys.executable, "-m", "ragline", "ingest", str(corpus), "--store", str(store), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RAGLINE_FAILPOINTS": failpoint, **SMALL_BATCHES},
    )
    assert crashed.returncode == -signal.SIGKILL, f"the failpoint was never reached: {crashed.stderr[-2000:]}"

    if after_crash == "source-reverted":
        # Points the crashed run wrote for v2 must not survive when v2 never comes back.
        for added in corpus.glob("note-1[2-5].md"):
            added.unlink()
        _write_corpus(corpus, 1)
        reference = v1_snapshot
    else:
        reference = None
    report = _ingest(store, corpus, embedder, allow_mass_delete=True)
    assert report.failed == 0 and report.errors == []
    if reference is None:
        clean = tmp_path / "clean"
        assert _ingest(clean, corpus, embedder).added == 15
        reference = _snapshot(clean, embedder)

    points, sources, (pending_deletes, unowned) = _snapshot(store, embedder)
    ref_points, ref_sources, _ = reference
    assert points == ref_points
    assert sources == ref_sources
    assert pending_deletes == [] and unowned == []
