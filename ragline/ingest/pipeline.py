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

The embedder gets a window of several write batches per call, so that it can group texts
of equal length in word pieces (padding is wasted model time); writes stay one batch at a
time, and a crash mid-window costs no model time on the re-run (the embedding cache).
Files are parsed ahead in parser processes once parsing proves slow (`parse_queue`): a
window then closes early when the next document is still being parsed, so the model and
the parsers work at the same time.

A run can be stopped between write batches (`run(stop=...)`, e.g. on SIGTERM): the listing
ends, the batches written so far stay committed, and deletions are skipped, since documents
an unfinished listing did not reach are not gone. The next run continues from there.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ragline.access.principals import READERS_FIELD, AccessError
from ragline.access.readers import document_readers
from ragline.connectors.base import Connector, ConnectorError, SourceItem
from ragline.errors import StoreError
from ragline.failpoints import failpoint
from ragline.ingest.chunking import Chunker
from ragline.ingest.config import IngestConfig
from ragline.ingest.embedding_cache import EmbeddingCache
from ragline.ingest.known import KnownView
from ragline.ingest.ledger import Ledger, LedgerEntry, Refusal
from ragline.ingest.loading import ParseOutcome
from ragline.ingest.parse_queue import WAITING, ParseQueue, Waiting
from ragline.ingest.parser_pool import ParserPool
from ragline.ingest.progress import ingest_progress
from ragline.ingest.reconcile import compare, flush_pending_deletes, repair
from ragline.models import Chunk, IngestError, IngestReport
from ragline.retrieval.embeddings import TextEmbedder
from ragline.retrieval.points import chunk_point
from ragline.retrieval.store import VectorStore
from ragline.text import path_text

if TYPE_CHECKING:
    from ragline.retrieval.second_stage import SecondStageEncoder

log = logging.getLogger(__name__)

# Free space an ingest keeps beyond its estimate: the engine preallocates WAL and mmap files.
DISK_HEADROOM_BYTES = 64 * 2**20

Vectors = dict[str, list[float]]  # by chunk content hash
# Chunks per embedder call: on SciFact, padding is 24% of the model's work when batches are
# cut from 256 texts sorted by characters, 12% from 256 by word pieces, 2% from 2,048.
EMBED_WINDOW = 2048


class _Parsed(BaseModel):
    item: SourceItem
    chunks: list[Chunk]
    previous: LedgerEntry | None
    readers: list[str]


def _windows(batches: Iterator[list[_Parsed] | Waiting]) -> Iterator[list[list[_Parsed]]]:
    """Consecutive write batches holding about EMBED_WINDOW chunks between them; fewer when
    the next batch waits for a parser process, so that the model works meanwhile."""
    window: list[list[_Parsed]] = []
    size = 0
    for batch in batches:
        if batch is WAITING:
            if window:
                yield window
                window, size = [], 0
            continue
        window.append(batch)
        size += sum(len(parsed.chunks) for parsed in batch)
        if size >= EMBED_WINDOW:
            yield window
            window, size = [], 0
    if window:
        yield window


def _stopping(stop: threading.Event | None, report: IngestReport) -> bool:
    """Whether the run was asked to stop; marks the report interrupted when so."""
    if stop is not None and stop.is_set():
        report.interrupted = True
    return report.interrupted


class Ingestor:
    def __init__(
        self,
        store: VectorStore,
        ledger: Ledger,
        embedder: TextEmbedder,
        chunker: Chunker,
        cache: EmbeddingCache,
        config: IngestConfig | None = None,
        *,
        second_stage: SecondStageEncoder | None = None,
        parsers: Callable[[], ParserPool] | None = None,
    ):
        self.store = store
        self.ledger = ledger
        self.embedder = embedder
        self.chunker = chunker
        self.cache = cache
        self.config = config or IngestConfig()
        self.second_stage = second_stage
        self.parsers = parsers  # a pool per run in place of parser processes (the Ray engine's)

    @property
    def _second(self) -> SecondStageEncoder | None:
        """The second-stage encoder while the store holds its vectors, or will once created."""
        if self.second_stage is None or (self.store.has_collection() and self.store.second_dim is None):
            return None
        return self.second_stage

    @cached_property  # compared for every document of every run
    def fingerprint(self) -> str:
        second = f";{self._second.fingerprint()}" if self._second else ""
        return f"{self.chunker.fingerprint()};{self.embedder.fingerprint()}{second}"

    # --- durable steps ---

    def recover(self) -> None:
        """Finish what a crashed run left: queued deletions, and points written but unowned."""
        orphans = self.ledger.unowned_pending_writes()
        if orphans:
            self.store.delete(orphans)
        self.ledger.clear_pending_writes()
        flush_pending_deletes(self.store, self.ledger)

    def _ensure_space(self, chunks: list[Chunk]) -> None:
        """Refuse to write a window the disk cannot hold: the embedded engine writes through
        mmap, and a full disk kills the process with SIGBUS, no message. The estimate is
        generous (cache, engine vectors and payloads, its WAL, the ledger) plus headroom for
        files the engine preallocates; what earlier windows wrote stays committed."""
        folder = self.ledger.path.parent
        dim = self.embedder.dim + (self._second.dim if self._second else 0)
        text = sum(len(chunk.text.encode("utf-8")) + 512 for chunk in chunks)  # payload text + fields
        needed = DISK_HEADROOM_BYTES + len(chunks) * dim * 4 * 5 + 4 * text
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise StoreError(
                folder, f"disk full ({free / 2**20:.1f} MB free, about {needed / 2**20:.0f} MB needed for the next "
                f"{len(chunks)} chunks)", "Free space or move the store, then run `ragline ingest` again: what was "
                "written so far is kept and the run continues from there",
            )  # fmt: skip

    def _embed(self, chunks: list[Chunk]) -> tuple[Vectors, Vectors]:
        """Dense vectors, and second-stage ones while the store holds them (else empty)."""
        second = self._second
        dense = self._cached(self.embedder.model_id, chunks, self.embedder.embed)
        return dense, self._cached(f"second-stage:{second.model_id}", chunks, second.embed) if second else {}

    def _cached(self, model: str, chunks: list[Chunk], embed: Callable[[list[str]], list[list[float]]]) -> Vectors:
        """`model`'s vectors by content hash; the texts not in the cache go to it in one call."""
        vectors = self.cache.get(model, (c.content_hash for c in chunks))
        missing = {c.content_hash: c.indexed_text for c in chunks if c.content_hash not in vectors}
        if missing:
            fresh = dict(zip(missing, embed(list(missing.values())), strict=True))
            self.cache.put(model, fresh)
            vectors.update(fresh)
        return vectors

    def _write(self, batch: list[_Parsed], vectors: tuple[Vectors, Vectors], report: IngestReport) -> None:
        chunks = [chunk for parsed in batch for chunk in parsed.chunks]
        dense, second = vectors
        if chunks:
            self.ledger.log_pending_writes(c.chunk_id for c in chunks)
            encoder = self._second
            self.store.ensure_collection(
                len(dense[chunks[0].content_hash]), encoder.dim if encoder else None, encoder.record if encoder else None
            )
            self.store.upsert([chunk_point(c, dense[c.content_hash], second.get(c.content_hash)) for c in chunks])
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
                    readers=parsed.readers,
                )
            )
            if parsed.previous:
                stale.extend(set(parsed.previous.point_ids) - set(point_ids))
                report.updated += 1
            else:
                report.added += 1
        self.ledger.commit(upserts=entries, stale_point_ids=stale)
        failpoint("ingest.after_commit")
        flush_pending_deletes(self.store, self.ledger)
        report.chunks_embedded += len(chunks)

    def _reconcile(self, source: str, known: dict[str, LedgerEntry], report: IngestReport) -> None:
        """Make the ledger agree with the index before classifying (`ragline.ingest.reconcile`)."""
        result = compare(self.store, source, known)
        if result.consistent:
            return
        log.warning(
            "%s: the index holds %d points, the ledger expects %d; re-processing %d documents whose points are "
            "missing, adopting %d unknown ones, deleting %d stray points",
            source, result.found_points, result.expected_points, len(result.damaged), len(result.adopted),
            len(result.stray),
        )  # fmt: skip
        repair(self.ledger, result, known)
        flush_pending_deletes(self.store, self.ledger)
        report.reconciled += len(result.damaged) + len(result.adopted)

    # --- classification ---

    @property
    def _refusal_settings(self) -> str:
        """What decides a refusal by type or size: a new parser or limit re-reads refused documents."""
        return f"{self.fingerprint};max_document_bytes={self.config.max_document_bytes}"

    def _update_readers(self, previous: LedgerEntry, readers: list[str], report: IngestReport) -> None:
        """An unchanged document whose readers changed: its points' payloads, then the ledger
        (a crash between them repeats the payload write next run). Nothing is embedded."""
        self.store.set_payload(previous.point_ids, {READERS_FIELD: readers})
        self.ledger.set_readers(previous.source, previous.document_id, readers)
        report.permissions_updated += 1

    def _chunks(self, item: SourceItem, outcome: ParseOutcome, refused: dict[str, Refusal],
                report: IngestReport, readers: list[str]) -> list[Chunk] | None:
        """The parsed document's chunks, or None (its error reported) when it failed."""
        where = path_text(item.path) if item.path else item.document_id
        if outcome.parsed is None:
            if outcome.refused:
                refused[item.document_id] = Refusal(item.version, item.content_hash, outcome.reason or "refused")
            report.errors.append(IngestError(document=where, error=outcome.reason or "not parsed"))
            return None
        try:
            chunks = self.chunker.chunk(outcome.parsed, document_id=item.document_id, source=item.source)
        except Exception as exc:  # a chunker bug must cost one document, not the run
            report.errors.append(IngestError(document=where, error=f"{type(exc).__name__}: {exc}"))
            return None
        return [c.model_copy(update={"readers": readers, "metadata": {**item.metadata, **c.metadata}}) for c in chunks]

    def _batches(
        self, connector: Connector, known: dict[str, LedgerEntry], report: IngestReport,
        seen: set[str], refused: dict[str, Refusal], tick: Callable[[int], None], stop: threading.Event | None,
        parsing: ParseQueue[tuple[LedgerEntry | None, list[str]]],
    ) -> Iterator[list[_Parsed] | Waiting]:
        """Changed documents, parsed, in write batches of about `batch_chunks` chunks, and
        `WAITING` before waiting for a parser process (the batches so far can be embedded
        meanwhile). A stop ends the listing: documents not yet written are read next run."""
        batch: list[_Parsed] = []
        size = 0

        def taken() -> Iterator[list[_Parsed] | Waiting]:
            """The oldest parsed document into the batch; the batch when it is full."""
            nonlocal batch, size
            if not parsing.ready:
                yield WAITING
                if not parsing.ready:
                    _ = self.embedder.dim  # loads the model while the parsers work
            item, (previous, readers), outcome = parsing.take()
            chunks = self._chunks(item, outcome, refused, report, readers)
            if chunks is None:
                report.failed += 1
                tick(1)
                return
            batch.append(_Parsed(item=item, chunks=chunks, previous=previous, readers=readers))
            size += len(chunks)
            if size >= self.config.batch_chunks:
                yield batch
                batch, size = [], 0

        refused_before = self.ledger.refusals(connector.source, self._refusal_settings)
        for item in connector.items(KnownView(known, self.fingerprint, refused_before)):
            if _stopping(stop, report):
                return
            seen.add(item.document_id)
            previous = known.get(item.document_id)
            before = refused_before.get(item.document_id)
            where = path_text(item.path) if item.path else item.document_id
            try:
                readers = document_readers(item.readers, connector.access, document=where)
            except AccessError as exc:  # the document keeps its previous version and readers
                report.errors.append(IngestError(document=where, error=str(exc)))
                report.failed += 1
                tick(1)
                continue
            if before and (before.version, before.content_hash) == (item.version, item.content_hash):
                refused[item.document_id] = before  # unchanged since it was refused: not read again
                report.errors.append(IngestError(document=where, error=before.reason))
                report.failed += 1
                tick(1)
            elif previous and previous.content_hash == item.content_hash and previous.fingerprint == self.fingerprint:
                if previous.readers != readers:
                    self._update_readers(previous, readers, report)
                report.unchanged += 1
                tick(1)
            else:
                parsing.put(item, (previous, readers))
            while parsing.ready or parsing.full:
                yield from taken()
        while len(parsing):
            if _stopping(stop, report):
                return
            yield from taken()
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
        flush_pending_deletes(self.store, self.ledger)
        report.deleted = len(gone)

    def run(self, connector: Connector, *, show_progress: bool = False,
            allow_mass_delete: bool | None = None, stop: threading.Event | None = None) -> IngestReport:
        """Ingest what changed in `connector`'s source. `stop`, once set, ends the run at the
        next batch boundary with `interrupted` set (see the module docstring)."""
        started = time.time()
        report = IngestReport()
        self.recover()
        known = self.ledger.documents(connector.source)
        self._reconcile(connector.source, known, report)
        seen: set[str] = set()
        refused: dict[str, Refusal] = {}  # documents refused by type or size this run
        with ingest_progress(show_progress) as progress:
            task = progress.add_task(connector.source, total=len(known) or None, chunks=0, rate="") if progress is not None else None
            done = 0

            def tick(documents: int) -> None:
                """Counts documents done: skipped, failed, or written (not merely parsed)."""
                nonlocal done
                done += documents
                if progress is not None:
                    elapsed = max(time.time() - started, 1e-6)
                    rate = f"{done / elapsed:.1f} docs/s, {report.chunks_embedded / elapsed:.1f} chunks/s"
                    progress.update(task, advance=documents, chunks=report.chunks_embedded, rate=rate)

            parsing: ParseQueue[tuple[LedgerEntry | None, list[str]]] = ParseQueue(self.config, self.parsers)
            try:
                for window in _windows(self._batches(connector, known, report, seen, refused, tick, stop, parsing)):
                    if _stopping(stop, report):
                        break
                    chunks = [c for batch in window for parsed in batch for c in parsed.chunks]
                    self._ensure_space(chunks)
                    vectors = self._embed(chunks)
                    for batch in window:
                        if _stopping(stop, report):
                            break
                        self._write(batch, vectors, report)
                        tick(len(batch))
            except ConnectorError as exc:
                report.errors.append(IngestError(document=connector.source, error=str(exc)))
                report.failed += 1
                self.ledger.record_run(connector.source, started, report.model_dump(mode="json"))
                return report  # a source that cannot be listed deletes nothing
            finally:
                parsing.close(now=report.interrupted or len(parsing) > 0)
        for document, reason in getattr(connector, "errors", []):
            report.errors.append(IngestError(document=document, error=reason))
            report.failed += 1
        if report.interrupted:  # an unfinished listing deletes nothing, and forgets no refusal
            self.ledger.record_run(connector.source, started, report.model_dump(mode="json"))
            return report
        allow = self.config.allow_mass_delete if allow_mass_delete is None else allow_mass_delete
        self._sync_deletions(connector, known, seen, report, allow)
        self.ledger.replace_refusals(connector.source, self._refusal_settings, refused)
        self.ledger.record_run(connector.source, started, report.model_dump(mode="json"))
        return report
