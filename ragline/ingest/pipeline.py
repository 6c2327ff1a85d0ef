"""Incremental ingestion of one connector's documents into a vector store.

Per run every document is classified added / updated / unchanged / deleted / failed.
Unchanged documents (same content hash and same parser+chunker+embedder fingerprint) cost
no parsing and no embedding. Order of writes per batch: new points, then the ledger commit
(which queues the points a document no longer owns), then deletion of the queued points.
A failed document keeps whatever it had in the index before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ragline.connectors.base import Connector, SourceItem
from ragline.ingest.chunking import Chunker
from ragline.ingest.ledger import Ledger, LedgerEntry
from ragline.ingest.parsing import ParseError, parse_file
from ragline.models import Chunk, IngestError, IngestReport
from ragline.retrieval.embeddings import Embedder
from ragline.retrieval.store import StoredPoint, VectorStore

BATCH_CHUNKS = 256  # chunks embedded and written per ledger commit


class _Parsed(BaseModel):
    item: SourceItem
    chunks: list[Chunk]
    previous: LedgerEntry | None


def chunk_point(chunk: Chunk, vector: list[float]) -> StoredPoint:
    payload = {
        **chunk.metadata,
        "document_id": chunk.document_id,
        "source": chunk.source,
        "chunk_id": chunk.chunk_id,
        "chunk_index": chunk.chunk_index,
        "content_hash": chunk.content_hash,
        "text": chunk.text,
    }
    return StoredPoint(id=chunk.chunk_id, vector=vector, payload=payload)


class Ingestor:
    def __init__(self, store: VectorStore, ledger: Ledger, embedder: Embedder, chunker: Chunker):
        self.store = store
        self.ledger = ledger
        self.embedder = embedder
        self.chunker = chunker

    @property
    def fingerprint(self) -> str:
        return f"{self.chunker.fingerprint()};{self.embedder.fingerprint()}"

    def _flush_pending_deletes(self) -> None:
        pending = self.ledger.pending_deletes()
        if pending:
            self.store.delete(pending)
            self.ledger.clear_pending(pending)

    def _parse(self, item: SourceItem, previous: LedgerEntry | None, report: IngestReport) -> _Parsed | None:
        try:
            parsed = parse_file(item.path)
            chunks = self.chunker.chunk(parsed, document_id=item.document_id, source=item.source)
        except ParseError as exc:
            report.errors.append(IngestError(document=str(item.path), error=str(exc)))
            return None
        except Exception as exc:  # a parser bug must cost one document, not the run
            report.errors.append(
                IngestError(document=str(item.path), error=f"{type(exc).__name__}: {exc}")
            )
            return None
        return _Parsed(item=item, chunks=chunks, previous=previous)

    def _write(self, batch: list[_Parsed], report: IngestReport) -> None:
        chunks = [chunk for parsed in batch for chunk in parsed.chunks]
        if chunks:
            vectors = self.embedder.embed([chunk.text for chunk in chunks])
            self.store.ensure_collection(len(vectors[0]))
            self.store.upsert([chunk_point(c, v) for c, v in zip(chunks, vectors, strict=True)])
        entries, stale = [], []
        for parsed in batch:
            point_ids = [chunk.chunk_id for chunk in parsed.chunks]
            entries.append(
                LedgerEntry(
                    source=parsed.item.source,
                    document_id=parsed.item.document_id,
                    content_hash=parsed.item.content_hash,
                    version=parsed.item.version,
                    fingerprint=self.fingerprint,
                    point_ids=point_ids,
                )
            )
            if parsed.previous:
                stale.extend(set(parsed.previous.point_ids) - set(point_ids))
                report.updated += 1
            else:
                report.added += 1
        self.ledger.commit(upserts=entries, stale_point_ids=stale)
        self._flush_pending_deletes()
        report.chunks_embedded += len(chunks)

    def _batches(self, connector: Connector, known: dict[str, LedgerEntry], report: IngestReport,
                 seen: set[str], tick) -> Iterator[list[_Parsed]]:
        batch: list[_Parsed] = []
        size = 0
        for item in connector.items():
            seen.add(item.document_id)
            previous = known.get(item.document_id)
            if (
                previous
                and previous.content_hash == item.content_hash
                and previous.fingerprint == self.fingerprint
            ):
                report.unchanged += 1
            elif parsed := self._parse(item, previous, report):
                batch.append(parsed)
                size += len(parsed.chunks)
            else:
                report.failed += 1
            tick()
            if size >= BATCH_CHUNKS:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def run(self, connector: Connector, *, show_progress: bool = False) -> IngestReport:
        report = IngestReport()
        self._flush_pending_deletes()  # finish what a crashed run had queued
        known = self.ledger.documents(connector.source)
        seen: set[str] = set()
        progress = (
            Progress(
                TextColumn("[bold]ingest[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            if show_progress
            else nullcontext()
        )
        with progress:
            task = progress.add_task(connector.source, total=None) if show_progress else None
            tick = (lambda: progress.advance(task)) if show_progress else (lambda: None)
            for batch in self._batches(connector, known, report, seen, tick):
                self._write(batch, report)
        gone = [entry for doc_id, entry in known.items() if doc_id not in seen]
        if gone:
            self.ledger.commit(
                removals=[(e.source, e.document_id) for e in gone],
                stale_point_ids=[p for e in gone for p in e.point_ids],
            )
            self._flush_pending_deletes()
            report.deleted = len(gone)
        return report
