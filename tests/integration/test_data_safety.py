"""Data safety: the index and the ledger never drift apart silently, and a source that cannot
be fully read never loses documents. Real engine, real embedder, real files; permission
cases run the real CLI in a process without root's permission overrides."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import ragline
from ragline.retrieval.store import StoredPoint

EXIT_PARTIAL_FAILURE = 3


def _folder(root: Path) -> Path:
    folder = root / "docs"
    (folder / "sub").mkdir(parents=True)
    for i in range(10):
        (folder / f"note{i}.txt").write_text(f"Note {i} is about the quarterly budget of team {i}.\n")
    (folder / "sub" / "h.txt").write_text("Hedgehogs hibernate through the winter in leaf nests.\n")
    return folder


def _open(store: Path, embedder):
    return ragline.open(store, embedder=embedder, retrieval={"rerank": "none"})


def _ingest(store: Path, embedder, folder: Path):
    with _open(store, embedder) as rag:
        return rag.ingest(folder)


def _points(store: Path, embedder, **filters) -> int:
    with _open(store, embedder) as rag:
        return rag.store.count(filters or None)


def _ledger_chunks(store: Path, embedder) -> int:
    with _open(store, embedder) as rag:
        return sum(summary.chunks for summary in rag.sources())


def test_a_lost_index_is_rebuilt_from_the_source(tmp_path, embedder) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    first = _ingest(store, embedder, folder)
    assert first.added == 11 and first.reconciled == 0
    shutil.rmtree(store / "qdrant")  # the index is gone, the ledger remains
    again = _ingest(store, embedder, folder)
    assert again.reconciled == 11 and again.updated == 11 and again.failed == 0
    assert _points(store, embedder) == _ledger_chunks(store, embedder) > 0
    with _open(store, embedder) as rag:
        assert rag.retrieve("hedgehogs hibernate", top_k=1)[0].document_id == "sub/h.txt"
    assert _ingest(store, embedder, folder).reconciled == 0  # converged: the next run is plain


def test_a_truncated_ledger_leaves_no_orphans(tmp_path, embedder) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    _ingest(store, embedder, folder)
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (store / name).unlink(missing_ok=True)
    (store / "ledger.sqlite").write_bytes(b"")  # emptied, as a failed restore leaves it
    (folder / "sub" / "h.txt").unlink()  # deleted while the ledger did not know it
    report = _ingest(store, embedder, folder)
    assert report.reconciled == 11 and report.deleted == 1 and report.failed == 0
    assert _points(store, embedder, document_id="sub/h.txt") == 0
    assert _points(store, embedder) == _ledger_chunks(store, embedder) == 10


def test_points_written_behind_the_ledgers_back_are_judged_by_the_source(tmp_path, embedder) -> None:
    """A stray copy of a known document's point is deleted; the ledger keeps what it owns."""
    folder, store = _folder(tmp_path), tmp_path / "store"
    _ingest(store, embedder, folder)
    with _open(store, embedder) as rag:
        point = next(rag.store.iter_points({"document_id": "note3.txt"}))
        stray = point.model_copy(update={"id": "00000000-0000-4000-8000-000000000001"})
        rag.store.upsert([StoredPoint(id=stray.id, vector=rag.embedder.embed_query("x"), payload=stray.payload)])
    report = _ingest(store, embedder, folder)
    assert report.reconciled == 0 and report.unchanged == 11
    assert _points(store, embedder, document_id="note3.txt") == 1


def test_a_symlink_loop_is_one_failed_document(tmp_path, embedder) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    report = _ingest(store, embedder, folder)
    assert report.added == 11 and report.failed == 2
    assert {error.document for error in report.errors} == {"a", "b"}


def _cli_without_root_overrides(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ragline ARGS` obeying permission bits even when the suite runs as root: the process
    drops the capabilities that let root read unreadable files (setpriv, util-linux)."""
    command = [sys.executable, "-m", "ragline", *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.fail("running as root needs util-linux's setpriv to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_unreadable_entries_are_failures_never_deletions(tmp_path, embedder) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    (folder / "secret.txt").write_text("Salaries of the board, confidential.\n")
    assert _ingest(store, embedder, folder).added == 12
    (folder / "sub").chmod(0)  # a directory that cannot be listed (or a mount that went away)
    (folder / "secret.txt").write_text("Salaries of the board, revised.\n")  # changed, so it must be read...
    (folder / "secret.txt").chmod(0)  # ...and cannot be
    (folder / "note0.txt").write_text("Note 0 now covers the travel policy.\n")
    try:
        run = _cli_without_root_overrides(
"ingest", str(folder), "--store", str(store), "--json")
    finally:
        (folder / "sub").chmod(0o755)
        (folder / "secret.txt").chmod(0o644)
    assert run.returncode == EXIT_PARTIAL_FAILURE, run.stderr
    report = json.loads(run.stdout)
    assert report["deleted"] == 0 and report["updated"] == 1 and report["failed"] == 2
    failed = {error["document"]: error["error"] for error in report["errors"]}
    assert "cannot list directory" in failed["sub"] and "cannot read" in failed["secret.txt"]
    assert _points(store, embedder, document_id="sub/h.txt") == 1  # kept, with its previous version
    assert _points(store, embedder, document_id="secret.txt") == 1


def test_check_compares_point_ids_and_repair_hands_the_rest_to_ingest(tmp_path, embedder) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    _ingest(store, embedder, folder)
    with _open(store, embedder) as rag:
        assert all(result.consistent for result in rag.check())
        lost = next(rag.store.iter_points({"document_id": "note5.txt"}))
        rag.store.delete([lost.id])  # one point lost, one orphan written: the counts still match
        orphan = lost.payload | {"document_id": "ghost.txt", "chunk_id": "00000000-0000-4000-8000-000000000002"}
        rag.store.upsert([StoredPoint(id=orphan["chunk_id"], vector=rag.embedder.embed_query("g"), payload=orphan)])
        (found,) = rag.check()
        assert found.damaged == {"note5.txt"} and set(found.adopted) == {"ghost.txt"}
        assert found.expected_points == found.found_points  # why ingest's cheap count check misses this
        rag.check(repair=True)
    report = _ingest(store, embedder, folder)
    assert report.updated == 1 and report.deleted == 1  # note5 re-processed, the ghost (not in the source) deleted
    with _open(store, embedder) as rag:
        assert all(result.consistent for result in rag.check())
        assert rag.store.count({"document_id": "ghost.txt"}) == 0 and rag.store.count({"document_id": "note5.txt"}) == 1
    from typer.testing import CliRunner

    from ragline.cli import app

    checked = CliRunner().invoke(app, ["check", "--store", str(store), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["consistent"] is True


def test_searching_a_store_whose_index_lost_points_warns(tmp_path, embedder, caplog) -> None:
    folder, store = _folder(tmp_path), tmp_path / "store"
    _ingest(store, embedder, folder)
    shutil.rmtree(store / "qdrant")
    with caplog.at_level("WARNING", logger="ragline.components"), _open(store, embedder) as rag:
        assert rag.retrieve("hedgehogs", top_k=1) == []
    assert "ragline check --repair" in caplog.text and "0 points" in caplog.text


def test_a_rag_is_usable_from_any_thread(tmp_path, embedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    folder = _folder(tmp_path)
    rag = _open(tmp_path / "store", embedder)
    with ThreadPoolExecutor(max_workers=1) as worker:
        report = worker.submit(rag.ingest, folder).result()  # the ledger and caches open in the worker
        assert worker.submit(lambda: rag.sources()[0].documents).result() == 11
    assert report.added == 11
    assert rag.sources()[0].chunks == rag.store.count()  # ...and are used from this thread
    assert rag.retrieve("hedgehogs hibernate", top_k=1)[0].document_id == "sub/h.txt"
    rag.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real 80 MB tmpfs (mounting needs root, which CI has): big enough for the ledger and
    caches, too small for the engine's preallocated files plus a large window."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the disk-full test needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_with_a_message_and_the_store_converges_later(tmp_path, small_disk) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    words = "budget policy leave travel hedgehog canteen quarterly report".split()
    for i in range(600):
        (folder / f"doc{i}.txt").write_text(" ".join(f"{words[(i + j) % len(words)]}{j}" for j in range(220)) + "\n")
    store = small_disk / "store"
    run = subprocess.run(
        [sys.executable, "-m", "ragline", "ingest", str(folder), "--store", str(store), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # not 135 (SIGBUS)
    error = json.loads(run.stdout)["error"]
    assert error["kind"] == "store" and "disk full" in error["message"] and "MB free" in error["message"]
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    again = subprocess.run(
        [sys.executable, "-m", "ragline", "ingest", str(folder), "--store", str(store), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] + report["unchanged"] == 600 and report["failed"] == 0
    checked = subprocess.run(
        [sys.executable, "-m", "ragline", "check", "--store", str(store), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert checked.returncode == 0 and json.loads(checked.stdout)["consistent"] is True


def test_refused_files_are_not_read_again_until_they_or_the_settings_change(tmp_path, embedder) -> None:
    """A refused file is not hashed again (a 3 GB file cost two full reads per run): made
    unreadable after the first run, it is still refused by type or size, not "cannot read";
    a new limit retries it."""
    folder, store = _folder(tmp_path), tmp_path / "store"
    (folder / "table.xyz").write_text("not a format ragline parses\n")
    (folder / "big.txt").write_text("word " * 400)
    limit = {"RAGLINE_INGEST__MAX_DOCUMENT_BYTES": "1000"}
    first = _cli_without_root_overrides("ingest", str(folder), "--store", str(store), "--json", env=limit)
    reasons = {Path(e["document"]).name: e["error"] for e in json.loads(first.stdout)["errors"]}
    assert reasons["table.xyz"].startswith("unsupported file type") and reasons["big.txt"].startswith("too large")
    (folder / "table.xyz").chmod(0)
    (folder / "big.txt").chmod(0)
    try:
        again = _cli_without_root_overrides("ingest", str(folder), "--store", str(store), "--json", env=limit)
        retried = _cli_without_root_overrides("ingest", str(folder), "--store", str(store), "--json",
                                              env={"RAGLINE_INGEST__MAX_DOCUMENT_BYTES": "100000"})
    finally:
        (folder / "table.xyz").chmod(0o644)
        (folder / "big.txt").chmod(0o644)
    assert again.returncode == retried.returncode == EXIT_PARTIAL_FAILURE
    reasons = {Path(e["document"]).name: e["error"] for e in json.loads(again.stdout)["errors"]}
    assert reasons["table.xyz"].startswith("unsupported file type") and reasons["big.txt"].startswith("too large")
    reasons = {Path(e["document"]).name: e["error"] for e in json.loads(retried.stdout)["errors"]}
    assert reasons["big.txt"].startswith("cannot read")  # the limit changed: read again (and now unreadable)
