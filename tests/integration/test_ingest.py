"""Incremental ingestion into the embedded store with real files, parser and embedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import ragline
from ragline.ingest.ledger import Ledger
from ragline.retrieval.config import EmbeddingConfig
from ragline.retrieval.embeddings import Embedder

GOOD = {
    "memo.pdf": "pdf/fake-memo.pdf",
    "page.html": "fake-html.html",
    "readme.md": "README.md",
    "simple.docx": "simple.docx",
    "mail.eml": "eml/fake-email.eml",
    "cups.csv": "stanley-cups.csv",
}
BROKEN = {
    "locked.pdf": "pdf/password.pdf",
    "style.xsl": "unsupported/factbook.xsl",
}


@pytest.fixture
def corpus(tmp_path, example_docs) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, source in {**GOOD, **BROKEN}.items():
        shutil.copyfile(example_docs / "files" / source, folder / name)
    return folder


@pytest.fixture
def rag(tmp_path, embedder):
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        yield rag


def _store_ids(rag, document_id: str) -> set[str]:
    return {p.id for p in rag.store.iter_points({"document_id": document_id})}


def _ledger_ids(rag, corpus: Path, document_id: str) -> set[str]:
    ledger = Ledger(rag.path / "ledger.sqlite")
    try:
        return set(ledger.documents(f"file://{corpus.resolve()}")[document_id].point_ids)
    finally:
        ledger.close()


def test_first_run_ingests_good_files_and_reports_broken_ones(rag, corpus):
    report = rag.ingest(corpus)
    assert (report.added, report.updated, report.unchanged, report.deleted) == (len(GOOD), 0, 0, 0)
    assert report.failed == len(BROKEN)
    failed = {Path(e.document).name: e.error for e in report.errors}
    assert set(failed) == set(BROKEN)
    assert "password" in failed["locked.pdf"].lower() or "encrypt" in failed["locked.pdf"].lower()
    assert "unsupported" in failed["style.xsl"].lower()
    assert report.chunks_embedded == rag.store.count() > 0

    for document_id in GOOD:
        points = list(rag.store.iter_points({"document_id": document_id}))
        assert points, f"{document_id} has no points"
        for point in points:
            assert {"document_id", "chunk_id", "source", "title", "page_number", "element_type", "text"} <= set(
                point.payload
            )
    pdf_pages = {p.payload["page_number"] for p in rag.store.iter_points({"document_id": "memo.pdf"})}
    assert pdf_pages and all(isinstance(page, int) and page >= 1 for page in pdf_pages)


def test_rerun_skips_unchanged_and_retries_failed(rag, corpus):
    rag.ingest(corpus)
    count = rag.store.count()
    report = rag.ingest(corpus)
    assert (report.added, report.updated, report.unchanged, report.deleted) == (0, 0, len(GOOD), 0)
    assert report.failed == len(BROKEN)  # failures are never recorded as done
    assert report.chunks_embedded == 0
    assert rag.store.count() == count


def test_modify_and_delete_sync_the_index(rag, corpus):
    rag.ingest(corpus)
    before = _store_ids(rag, "readme.md")

    readme = corpus / "readme.md"
    readme.write_text("# Rewritten\n\nThe quarterly offsite moves to Lisbon in May.\n")
    (corpus / "page.html").unlink()
    report = rag.ingest(corpus)

    assert (report.added, report.updated, report.deleted) == (0, 1, 1)
    assert report.unchanged == len(GOOD) - 2
    after = _store_ids(rag, "readme.md")
    assert after and not (before & after), "stale chunks of the old version must be gone"
    assert after == _ledger_ids(rag, corpus, "readme.md")
    assert _store_ids(rag, "page.html") == set()
    hits = rag.retrieve("Where is the quarterly offsite?", top_k=1)
    assert hits[0].document_id == "readme.md" and "Lisbon" in hits[0].text


def test_document_that_breaks_keeps_its_previous_points(rag, corpus):
    rag.ingest(corpus)
    before = _store_ids(rag, "simple.docx")
    (corpus / "simple.docx").write_bytes(b"PK\x03\x04 this is not a real docx archive")
    report = rag.ingest(corpus)
    assert report.failed == len(BROKEN) + 1
    assert any(Path(e.document).name == "simple.docx" for e in report.errors)
    assert _store_ids(rag, "simple.docx") == before


def test_changed_chunking_reprocesses_everything(tmp_path, embedder, corpus):
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        rag.ingest(corpus)
    with ragline.open(tmp_path / "store", embedder=embedder, chunking={"chunk_size": 64, "chunk_overlap": 8}) as rag:
        report = rag.ingest(corpus)
        assert (report.updated, report.unchanged) == (len(GOOD), 0)
        for document_id in GOOD:
            assert _store_ids(rag, document_id) == _ledger_ids(rag, corpus, document_id)


def test_reopened_store_keeps_everything(tmp_path, embedder, corpus):
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        rag.ingest(corpus)
        count = rag.store.count()
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        assert rag.store.count() == count
        assert rag.ingest(corpus).unchanged == len(GOOD)


def test_missing_path_is_a_clear_per_path_error(rag, tmp_path):
    report = rag.ingest(tmp_path / "nowhere")
    assert report.failed == 1
    assert "does not exist" in report.errors[0].error


def test_server_store_backend_through_the_same_api(tmp_path, embedder, corpus):
    server = {"kind": "server", "url": ":memory:", "collection": "contract"}
    with ragline.open(tmp_path / "store", embedder=embedder, store=server) as rag:
        report = rag.ingest(corpus)
        assert report.added == len(GOOD)
        assert type(rag.store).__name__ == "ServerStore"
        assert rag.store.count() == report.chunks_embedded
        hits = rag.retrieve("Stanley Cup winners", top_k=3)
        assert hits and hits[0].document_id == "cups.csv"


def test_embed_groups_texts_by_word_pieces_and_keeps_their_order(embedder):
    small = Embedder(EmbeddingConfig(batch_size=3))
    small.__dict__["_model"] = embedder._model  # the session's loaded model
    # the last is short in characters but long in word pieces
    texts = [" ".join(["word"] * n) for n in (40, 3, 17, 1, 60, 8, 25)] + ["1.2.3.4.5.6.7.8.9.0"]
    batches = small.batches(texts)
    assert sorted(i for batch in batches for i in batch) == list(range(len(texts)))
    pieces = [len(ids) for ids in embedder._model.tokenizer(texts)["input_ids"]]
    order = [i for batch in batches for i in batch]
    assert [pieces[i] for i in order] == sorted(pieces, reverse=True), "by word pieces, not characters"

    vectors = np.array(small.embed(texts))
    alone = np.array([embedder._model.encode([t], normalize_embeddings=True)[0] for t in texts])
    assert np.allclose(vectors, alone, atol=1e-5), "batching may change rounding only"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
