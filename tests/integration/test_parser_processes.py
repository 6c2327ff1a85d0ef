"""Parser processes (`[ingest] parse_workers`): they store exactly what parsing in the
ingesting process stores, and a parser that dies or hangs costs its document alone, which
keeps its previous version and is read again by the next run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ragline
from ragline.components import EMBEDDING_CACHE_FILE
from ragline.processes import process_alive

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
IN_WORKERS = {"parse_workers": 1, "parse_processes_after_seconds": 0}


def _stored(rag) -> dict[str, tuple]:
    return {
        p.id: (p.payload["document_id"], p.payload["text"], p.payload.get("context_header"), p.payload["page_number"])
        for p in rag.store.iter_points()
    }


def _parser_processes(parent: int | None = None) -> list[int]:
    """Running parser processes started by `parent` (default: this test process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if b"ragline.ingest.parse_worker" in cmdline and fields[0] != "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def test_workers_store_what_in_process_parsing_stores(tmp_path, embedder):
    with ragline.open(tmp_path / "here", embedder=embedder, ingest={"parse_workers": 0}) as rag:
        here = rag.ingest(SAMPLES)
        expected = _stored(rag)
    (tmp_path / "workers").mkdir()  # the same vectors, without embedding them again
    shutil.copy(tmp_path / "here" / EMBEDDING_CACHE_FILE, tmp_path / "workers" / EMBEDDING_CACHE_FILE)
    with ragline.open(tmp_path / "workers", embedder=embedder, ingest=IN_WORKERS) as rag:
        report = rag.ingest(SAMPLES)
        assert (report.added, report.failed, report.chunks_embedded) == (here.added, 0, here.chunks_embedded)
        assert _stored(rag) == expected  # same ids (they hash the chunk), texts, headers, pages
        assert rag.ingest(SAMPLES).unchanged == here.added
    assert _parser_processes() == []  # the run stopped its workers


def test_a_parser_that_dies_costs_its_document_only(tmp_path, embedder, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "employee-handbook.md", docs)
    shutil.copy(SAMPLES / "product-faq.html", docs)
    with ragline.open(tmp_path / "store", embedder=embedder, ingest={"parse_workers": 0}) as rag:
        assert rag.ingest(docs).added == 2
        before = _stored(rag)
    with ragline.open(tmp_path / "store", embedder=embedder, ingest=IN_WORKERS) as rag:
        (docs / "employee-handbook.md").write_text("# Handbook\n\nEmployees get 30 days of paid leave.\n")
        shutil.copy(SAMPLES / "security-policy.pdf", docs)

        monkeypatch.setenv("RAGLINE_FAILPOINTS", "parse.worker")  # each worker kills itself on its first document
        report = rag.ingest(docs)
        assert (report.added, report.updated, report.unchanged, report.failed) == (0, 0, 1, 2)
        assert sorted(Path(e.document).name for e in report.errors) == ["employee-handbook.md", "security-policy.pdf"]
        assert all("parser process died (killed by signal 9)" in e.error for e in report.errors), report.errors
        assert _stored(rag) == before  # the handbook keeps its previous version, nothing is deleted

        monkeypatch.delenv("RAGLINE_FAILPOINTS")
        report = rag.ingest(docs)
        assert (report.added, report.updated, report.failed) == (1, 1, 0)
        assert "30 days" in rag.retrieve("How many days of paid leave?", top_k=1)[0].text


def test_a_parser_that_hangs_is_stopped(tmp_path, embedder, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "security-policy.pdf", docs)
    shutil.copy(SAMPLES / "employee-handbook.md", docs)
    monkeypatch.setenv("RAGLINE_FAILPOINTS", "parse.worker:stop")  # each worker hangs on its first document
    # Were the timeout broken, the ingest would wait forever: after 120 s the watchdog kills
    # every worker (the restarted ones hang too), so the test fails on the errors below
    # instead of hanging the suite.
    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(120):
            while not done.wait(0.5):
                for pid in _parser_processes():
                    os.kill(pid, signal.SIGKILL)

    threading.Thread(target=watchdog, daemon=True).start()
    with ragline.open(tmp_path / "store", embedder=embedder, ingest={**IN_WORKERS, "parse_timeout_seconds": 0.5}) as rag:
        try:
            report = rag.ingest(docs)
        finally:
            done.set()
        assert (report.added, report.failed) == (0, 2)
        assert sorted(Path(e.document).name for e in report.errors) == ["employee-handbook.md", "security-policy.pdf"]
        for error in report.errors:
            assert "parsing took longer than 0.5 s (ingest.parse_timeout_seconds)" in error.error, error
        assert rag.store.count() == 0
    assert _parser_processes() == []


def test_a_killed_ingest_leaves_no_parser_behind(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLES / "security-policy.pdf", docs)
    script = (f"import ragline\nragline.open({str(tmp_path / 'store')!r}, ingest={IN_WORKERS!r})"
              f".ingest({str(docs)!r})\n")  # fmt: skip
    hang = {"RAGLINE_FAILPOINTS": "parse.worker:stop"}  # the worker hangs: only the ingest's death can end it
    ingest = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1", **hang})
    try:
        deadline = time.monotonic() + 60
        while not (workers := [pid for pid in _parser_processes(ingest.pid) if _state(pid) == "T"]):
            assert ingest.poll() is None and time.monotonic() < deadline, "no parser process took a document"
            time.sleep(0.05)
    finally:
        ingest.kill()
        ingest.wait()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"parser processes {workers} outlived the killed ingest"
        time.sleep(0.05)


def _state(pid: int) -> str:
    """"T" for a stopped process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "Z"
