"""Deletion sync and its guard, the embedding cache, connector-reported errors, `sources`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pytest

import ragline
from ragline.connectors.base import Connector, KnownDocument, SourceItem, sha256_text
from ragline.retrieval.embeddings import Embedder


class CountingEmbedder(Embedder):
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, model):
        super().__init__()
        self.__dict__["_model"] = model  # share the session's loaded model
        self.texts = 0
        self.calls: list[int] = []

    def embed(self, texts, *, show_progress=False):
        self.texts += len(texts)
        self.calls.append(len(texts))
        return super().embed(texts, show_progress=show_progress)


@pytest.fixture
def counting(embedder):
    return CountingEmbedder(embedder._model)


def _notes(folder, count: int, start: int = 0) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(start, start + count):
        (folder / f"n{i:02d}.md").write_text(f"# Note {i}\n\nNote {i} is about the subject {i * 13}.\n")


def test_mass_delete_guard_trips_and_can_be_overridden(tmp_path, embedder):
    corpus = tmp_path / "share"
    _notes(corpus, 10)
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        rag.ingest(corpus)
        count = rag.store.count()
        for path in list(corpus.iterdir())[:5]:  # half the source vanishes
            path.unlink()
        report = rag.ingest(corpus)
        assert report.deleted == 0 and report.failed == 1
        assert "refusing to delete 5 of 10" in report.errors[0].error
        assert "--allow-mass-delete" in report.errors[0].error
        assert rag.store.count() == count, "nothing may be deleted when the guard trips"

        report = rag.ingest(corpus, allow_mass_delete=True)
        assert report.deleted == 5 and report.failed == 0
        assert rag.store.count() == count - 5

        small = rag.ingest(corpus)  # a small deletion (1 of 5 = 20%) passes the guard
        assert small.deleted == 0
        next(corpus.iterdir()).unlink()
        assert rag.ingest(corpus).deleted == 1


def test_empty_source_never_wipes_the_index(tmp_path, embedder):
    corpus = tmp_path / "mount"
    _notes(corpus, 3)
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        rag.ingest(corpus)
        for path in list(corpus.iterdir()):
            path.unlink()  # the share came back empty (unmounted)
        report = rag.ingest(corpus)
        assert report.deleted == 0 and "refusing to delete 3 of 3" in report.errors[0].error
        assert rag.store.count() == 3


def test_identical_text_is_never_embedded_twice(tmp_path, counting):
    corpus = tmp_path / "docs"
    _notes(corpus, 4)
    with ragline.open(tmp_path / "store", embedder=counting) as rag:
        first = rag.ingest(corpus)
        assert counting.texts == first.chunks_embedded == 4
        (corpus / "copy.md").write_text((corpus / "n01.md").read_text())
        (corpus / "n02.md").rename(corpus / "renamed.md")
        report = rag.ingest(corpus)
        assert (report.added, report.deleted) == (2, 1)
        assert counting.texts == 4, "copies and renames must come from the embedding cache"
        hits = rag.retrieve("Note 1 subject 13", top_k=2)
        assert {h.document_id for h in hits} == {"n01.md", "copy.md"}


def test_embedding_windows_span_write_batches(tmp_path, counting, monkeypatch):
    """The model gets several write batches per call; every batch is still written and
    committed, and each chunk gets its own text's vector."""
    monkeypatch.setattr("ragline.ingest.pipeline.EMBED_WINDOW", 5)
    corpus = tmp_path / "docs"
    _notes(corpus, 12)
    with ragline.open(tmp_path / "store", embedder=counting, ingest={"batch_chunks": 2}) as rag:
        report = rag.ingest(corpus)
        assert report.added == report.chunks_embedded == rag.store.count() == 12
        assert counting.calls == [6, 6], "windows of three 2-chunk batches"
        assert sum(s.chunks for s in rag.sources()) == 12
        for i in (0, 7, 11):
            assert rag.retrieve(f"Note {i} subject {i * 13}", top_k=1)[0].document_id == f"n{i:02d}.md"


class FlakySource(Connector):
    """A third-party style connector: one document fails to read but still exists."""

    source = "flaky:test"

    def __init__(self, texts: dict[str, str], unreadable: set[str]):
        self.texts, self.unreadable = texts, unreadable
        self.errors: list[tuple[str, str]] = []
        self.keep: set[str] = set()

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        self.errors, self.keep = [], set()
        for doc_id, text in self.texts.items():
            if doc_id in self.unreadable:
                self.errors.append((doc_id, "503 Service Unavailable"))
                self.keep.add(doc_id)
                continue
            yield SourceItem(document_id=doc_id, source=self.source, version="1",
                             content_hash=sha256_text(text), text=text, metadata={"origin": "flaky"})


def test_connector_errors_are_reported_and_kept_documents_survive(tmp_path, embedder):
    texts = {f"doc-{i}": f"Document {i} talks about widgets of size {i}." for i in range(5)}
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        assert rag.ingest(FlakySource(texts, set())).added == 5
        report = rag.ingest(FlakySource(texts, {"doc-3"}))
        assert (report.unchanged, report.failed, report.deleted) == (4, 1, 0)
        assert report.errors[0].document == "doc-3" and "503" in report.errors[0].error
        assert rag.store.count({"document_id": "doc-3"}) == 1
        hit = rag.retrieve("widgets of size 2", top_k=1)[0]
        assert hit.metadata["origin"] == "flaky" and hit.document_id == "doc-2"


def test_sources_command_lists_counts_and_last_run(tmp_path, embedder):
    from typer.testing import CliRunner

    from ragline.cli import app

    corpus = tmp_path / "docs"
    _notes(corpus, 3)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    store = tmp_path / "store"
    with ragline.open(store, embedder=embedder) as rag:
        rag.ingest(corpus)
    result = CliRunner().invoke(app, ["sources", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)["sources"]
    assert summary["source"] == f"file://{corpus.resolve()}"
    assert (summary["documents"], summary["chunks"]) == (3, 3)
    assert summary["last_report"]["added"] == 3 and summary["last_report"]["failed"] == 1
    assert summary["last_report"]["errors"][0]["document"].endswith("broken.pdf")
    assert summary["last_run_finished"] >= summary["last_run_started"]


def test_configured_sources_are_ingested_by_kind(tmp_path, embedder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _notes(tmp_path / "notes", 2)
    (tmp_path / "records.jsonl").write_text(
        '{"_id": "r1", "title": "Record one", "text": "The first record is about lighthouses."}\n'
        '{"_id": "r2", "title": "Record two", "text": "The second record is about glaciers."}\n'
    )
    (tmp_path / "ragline.toml").write_text(
        '[[sources]]\nkind = "filesystem"\nroot = "notes"\n\n'
        '[[sources]]\nkind = "dataset"\npath = "records.jsonl"\n\n'
        '[[sources]]\nkind = "sql"\nurl = "sqlite:///missing-dir/nope.db"\nquery = "SELECT 1"\nid_column = "id"\n'
        'text_columns = ["body"]\n'
    )
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        report = rag.ingest()
        assert report.added == 4
        assert report.failed == 1 and "sql" in report.errors[0].document + report.errors[0].error
        assert rag.retrieve("glaciers", top_k=1)[0].document_id == "r2"
        assert {s.source.split(":")[0] for s in rag.sources()} == {"file", "dataset", "sql"}
