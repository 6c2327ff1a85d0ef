"""Every one of the shared example documents (~35 formats, broken and huge ones included)
is either ingested or reported with a per-document reason; nothing crashes a run."""

from __future__ import annotations

import re

import pytest

import ragline
from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector
from ragline.ingest.parser_processes import ParserProcesses

MAX_BYTES = 1_000_000  # keeps the multi-megabyte books out of a test run's embedding budget
KNOWN_REASONS = re.compile(
    r"^(unsupported file type|empty document|too large|encrypted or password-protected|"
    r"malformed/corrupt file|cannot decode text)"
)


def test_every_example_document_parses_or_fails_with_a_named_reason(example_docs):
    """Through two parser processes, as a long ingest parses: a crash or a hang would fail
    a document with "the parser process died" or "took longer", not a known reason."""
    connector = FilesystemConnector(FilesystemConfig(root=example_docs / "files"))
    items = list(connector.items({}))
    assert len(items) >= 240
    workers = ParserProcesses(2, max_bytes=MAX_BYTES, timeout=300)
    try:
        outcomes = {item.document_id: future.result() for item, future in [(i, workers.submit(i)) for i in items]}
    finally:
        workers.close()
    reasons = {doc: outcome.reason for doc, outcome in outcomes.items() if outcome.parsed is None}
    for document, reason in reasons.items():
        assert KNOWN_REASONS.match(reason), f"{document}: {reason}"
    for outcome in outcomes.values():
        assert outcome.parsed is None or (outcome.parsed.elements and all(e.text for e in outcome.parsed.elements))
    assert len(outcomes) - len(reasons) >= 140
    assert reasons["pdf/password.pdf"].startswith("encrypted")
    assert reasons["password_protected.xlsx"].startswith("encrypted")
    assert reasons["book-war-and-peace-1225p.txt"].startswith("too large")
    assert reasons["empty.txt"].startswith("empty document")
    assert reasons["unsupported/factbook.xsl"].startswith("unsupported file type")
    assert reasons["pdf/pdf-bad-color-space.pdf"].startswith("malformed/corrupt file")
    assert outcomes["unsupported/factbook.xsl"].refused and outcomes["book-war-and-peace-1225p.txt"].refused


@pytest.mark.slow
def test_ingest_all_example_documents(tmp_path, embedder, example_docs):
    """~4 minutes on 2 cores: the full run, twice (the second one reads and skips)."""
    files = sum(1 for p in (example_docs / "files").rglob("*") if p.is_file())
    with ragline.open(tmp_path / "store", embedder=embedder, ingest={"max_document_bytes": MAX_BYTES}) as rag:
        report = rag.ingest(example_docs / "files")
        assert report.added + report.failed == files
        assert len(report.errors) == report.failed
        assert all(KNOWN_REASONS.match(e.error) for e in report.errors)
        assert rag.store.count() == report.chunks_embedded
        again = rag.ingest(example_docs / "files")
        assert (again.unchanged, again.failed, again.chunks_embedded) == (report.added, report.failed, 0)
