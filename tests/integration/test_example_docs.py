"""Every one of the shared example documents (~35 formats, broken and huge ones included)
is either ingested or reported with a per-document reason; nothing crashes a run."""

from __future__ import annotations

import re

import pytest

import ragline
from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector
from ragline.ingest.loading import load_item
from ragline.ingest.parsing import ParseError

MAX_BYTES = 1_000_000  # keeps the multi-megabyte books out of a test run's embedding budget
KNOWN_REASONS = re.compile(
    r"^(unsupported file type|empty document|too large|encrypted or password-protected|"
    r"malformed/corrupt file|cannot decode text)"
)


def test_every_example_document_parses_or_fails_with_a_named_reason(example_docs):
    connector = FilesystemConnector(FilesystemConfig(root=example_docs / "files"))
    items = list(connector.items({}))
    assert len(items) >= 240
    parsed, reasons = 0, {}
    for item in items:
        try:
            document = load_item(item, max_bytes=MAX_BYTES)
        except ParseError as exc:  # anything else escaping is a bug
            assert KNOWN_REASONS.match(exc.reason), f"{item.document_id}: {exc.reason}"
            assert str(item.path) in str(exc)
            reasons[item.document_id] = exc.reason
        else:
            assert document.elements and all(e.text for e in document.elements)
            parsed += 1
    assert parsed >= 140
    assert reasons["pdf/password.pdf"].startswith("encrypted")
    assert reasons["password_protected.xlsx"].startswith("encrypted")
    assert reasons["book-war-and-peace-1225p.txt"].startswith("too large")
    assert reasons["empty.txt"].startswith("empty document")
    assert reasons["unsupported/factbook.xsl"].startswith("unsupported file type")
    assert reasons["pdf/pdf-bad-color-space.pdf"].startswith("malformed/corrupt file")


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
