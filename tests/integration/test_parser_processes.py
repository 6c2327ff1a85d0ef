"""Parser processes (`[ingest] parse_workers`): they store exactly what parsing in the
ingesting process stores, and a parser that dies or hangs costs its document alone, which
keeps its previous version and is read again by the next run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import ragline
from ragline.components import EMBEDDING_CACHE_FILE

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
FILING = ROOT.parent / "shared" / "data" / "sec10q-dev" / "docs" / "2022 Q3 AAPL.pdf"
IN_WORKERS = {"parse_workers": 1, "parse_processes_after_seconds": 0}


def _stored(rag) -> dict[str, tuple]:
    return {
        p.id: (p.payload["document_id"], p.payload["text"], p.payload.get("context_header"), p.payload["page_number"])
        for p in rag.store.iter_points()
    }


def _parser_processes() -> list[int]:
    """Running parser processes started by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"ragline.ingest.parse_worker" in cmdline and parent == os.getpid():
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


@pytest.mark.skipif(not FILING.is_file(), reason=f"shared filing not found at {FILING}")
def test_a_parser_that_takes_too_long_is_stopped(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FILING, docs / "filing.pdf")
    settings = {**IN_WORKERS, "parse_timeout_seconds": 0.2}  # a 28-page 10-Q takes seconds to lay out
    with ragline.open(tmp_path / "store", embedder=embedder, ingest=settings) as rag:
        report = rag.ingest(docs)
        assert (report.added, report.failed) == (0, 1)
        [error] = report.errors
        assert Path(error.document).name == "filing.pdf"
        assert "parsing took longer than 0.2 s (ingest.parse_timeout_seconds)" in error.error
        assert rag.store.count({"document_id": "filing.pdf"}) == 0
    assert _parser_processes() == []
