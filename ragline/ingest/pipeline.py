"""Incremental, crash-safe ingestion of one connector's documents into a vector store.

Per run every document is classified added / updated / unchanged / deleted / failed.
Unchanged documents (same content hash and same parser+chunker+embedder fingerprint) cost
no parsing and no embedding. Writes per batch, each durable before the next:

1. the batch's point ids go to the ledger's pending-writes log;
2. the points are upserted (ids are deterministic, so a repeat is idempotent);
3. the ledger commits the documents and queues the points they no longer own;
4. the queued points are deleted.

A crash anywhere leaves points that the next run's recovery either finds owned by a
document or deletes, so re-running converges to exactly the state of a clean ingest. A
failed document keeps whatever it had in the index before, and is retried next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ragline.config import IngestConfig
from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem
from ragline.failpoints import failpoint
from ragline.ingest.chunking import Chunker
from ragline.ingest.embedding_cache import EmbeddingCache
from ragline.ingest.ledger import Ledger, LedgerEntry
from ragline.ingest.loading import load_item
from ragline.ingest.parsing import ParseError
from ragline.models import Chunk, IngestError, IngestReport
from ragline.retrieval.embeddings import Embedder
from ragline.retrieval.store import StoredPoint, VectorStore

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


def _progress(show: bool):
    if not show:
        return nullcontext()
    return Progress(
        TextColumn("[bold]ingest[/] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed} docs · {task.fields[chunks]} chunks"),
        TextColumn("· {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class Ingestor:
    def __init__(
        self,
        store: VectorStore,
        ledger: Ledger,
        embedder: Embedder,
        chunker: Chunker,
        cache: EmbeddingCache,
        config: IngestConfig | None = None,
    ):
        self.store = store
        self.ledger = ledger
        self.embedder = embedder
        self.chunker = chunker
        self.cache = cache
        self.config = config or IngestConfig()

    @property
    def fingerprint(self) -> str:
        return f"{self.chunker.fingerprint()};{self.embedder.fingerprint()}"

    # --- durable steps ---

    def recover(self) -> None:
        """Finish what a crashed run left: queued deletions, and points written but unowned."""
        orphans = self.ledger.unowned_pending_writes()
        if orphans:
            self.store.delete(orphans)
        self.ledger.clear_pending_writes()
        self._flush_pending_deletes()

    def _flush_pending_deletes(self) -> None:
        pending = self.ledger.pending_deletes()
        if pending:
            self.store.delete(pending)
            failpoint("ingest.after_delete")
            self.ledger.clear_pending(pending)

    def _embed(self, chunks: list[Chunk]) -> list[list[float]]:
        model = self.embedder.model_id
        vectors = self.cache.get(model, (c.content_hash for c in chunks))
        missing = {c.content_hash: c.text for c in chunks if c.content_hash not in vectors}
        if missing:
            fresh = dict(zip(missing, self.embedder.embed(list(missing.values())), strict=True))
            self.cache.put(model, fresh)
            vectors.update(fresh)
        return [vectors[c.content_hash] for c in chunks]

    def _write(self, batch: list[_Parsed], report: IngestReport) -> None:
        chunks = [chunk for parsed in batch for chunk in parsed.chunks]
        if chunks:
            vectors = self._embed(chunks)
            self.ledger.log_pending_writes(c.chunk_id for c in chunks)
            self.store.ensure_collection(len(vectors[0]))
            self.store.upsert([chunk_point(c, v) for c, v in zip(chunks, vectors, strict=True)])
            failpoint("ingest.after_upsert")
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
        failpoint("ingest.after_commit")
        self._flush_pending_deletes()
        report.chunks_embedded += len(chunks)

    # --- classification ---

    def _parse(self, item: SourceItem, previous: LedgerEntry | None, report: IngestReport) -> _Parsed | None:
        where = str(item.path) if item.path else item.document_id
        try:
            parsed = load_item(item, max_bytes=self.config.max_document_bytes)
            chunks = self.chunker.chunk(parsed, document_id=item.document_id, source=item.source)
        except ParseError as exc:
            report.errors.append(IngestError(document=where, error=exc.reason))
            return None
        except Exception as exc:  # a parser bug must cost one document, not the run
            report.errors.append(IngestError(document=where, error=f"{type(exc).__name__}: {exc}"))
            return None
        if item.metadata:
            chunks = [c.model_copy(update={"metadata": {**item.metadata, **c.metadata}}) for c in chunks]
        return _Parsed(item=item, chunks=chunks, previous=previous)

    def _batches(
        self, connector: Connector, known: dict[str, LedgerEntry], report: IngestReport,
        seen: set[str], tick: Callable[[int], None],
    ) -> Iterator[list[_Parsed]]:
        # Documents made with another fingerprint must be re-read in full, so the connector
        # is not told about them (no conditional requests for those).
        current = {
            doc_id: KnownDocument(version=e.version, content_hash=e.content_hash)
            for doc_id, e in known.items()
            if e.fingerprint == self.fingerprint
        }
        batch: list[_Parsed] = []
        size = 0
        for item in connector.items(current):
            seen.add(item.document_id)
            previous = known.get(item.document_id)
            if previous and previous.content_hash == item.content_hash and previous.fingerprint == self.fingerprint:
                report.unchanged += 1
            elif parsed := self._parse(item, previous, report):
                batch.append(parsed)
                size += len(parsed.chunks)
            else:
                report.failed += 1
            tick(size)
            if size >= self.config.batch_chunks:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _sync_deletions(self, connector: Connector, known: dict[str, LedgerEntry], seen: set[str],
                        report: IngestReport, allow_mass_delete: bool) -> None:
        keep = getattr(connector, "keep", set())
        gone = [entry for doc_id, entry in known.items() if doc_id not in seen and doc_id not in keep]
        if not gone:
            return
        limit = max(1, int(self.config.max_delete_fraction * len(known)))
        if not allow_mass_delete and (len(gone) > limit or not seen):
            report.errors.append(
                IngestError(
                    document=connector.source,
                    error=f"refusing to delete {len(gone)} of {len(known)} documents (more than "
                    f"{self.config.max_delete_fraction:.0%} of the source, or all of it); if the source "
                    "really shrank that much, re-run with --allow-mass-delete",
                )
            )
            report.failed += 1
            return
        self.ledger.commit(
            removals=[(e.source, e.document_id) for e in gone],
            stale_point_ids=[p for e in gone for p in e.point_ids],
        )
        self._flush_pending_deletes()
        report.deleted = len(gone)

    def run(self, connector: Connector, *, show_progress: bool = False,
            allow_mass_delete: bool | None = None) -> IngestReport:
        started = time.time()
        report = IngestReport()
        self.recover()
        known = self.ledger.documents(connector.source)
        seen: set[str] = set()
        with _progress(show_progress) as progress:
            task = progress.add_task(connector.source, total=len(known) or None, chunks=0, rate="") if progress is not None else None

            def tick(pending_chunks: int) -> None:
                if progress is not None:
                    elapsed = max(time.time() - started, 1e-6)
                    chunks = report.chunks_embedded + pending_chunks
                    rate = f"{len(seen) / elapsed:.1f} docs/s, {chunks / elapsed:.1f} chunks/s"
                    progress.update(task, advance=1, chunks=chunks, rate=rate)

            try:
                for batch in self._batches(connector, known, report, seen, tick):
                    self._write(batch, report)
            except ConnectorError as exc:
                report.errors.append(IngestError(document=connector.source, error=str(exc)))
                report.failed += 1
                self.ledger.record_run(connector.source, started, report.model_dump(mode="json"))
                return report  # a source that cannot be listed deletes nothing
        for document, reason in getattr(connector, "errors", []):
            report.errors.append(IngestError(document=document, error=reason))
            report.failed += 1
        allow = self.config.allow_mass_delete if allow_mass_delete is None else allow_mass_delete
        self._sync_deletions(connector, known, seen, report, allow)
        self.ledger.record_run(connector.source, started, report.model_dump(mode="json"))
        return report
