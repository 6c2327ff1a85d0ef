"""The ingestion ledger: per source and document, what is in the index and how it was made.

SQLite in the store directory. A document is recorded only after its points are written,
and points it no longer owns are queued for deletion in the same transaction. Point ids
about to be written are logged first (`pending_writes`), so after a crash at any moment the
next run can delete points that no document owns: the store converges to a clean ingest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from ragline.ingest.sqlite import connect, serialised

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    point_ids TEXT NOT NULL,
    ingested_at REAL NOT NULL,
    PRIMARY KEY (source, document_id)
);
CREATE TABLE IF NOT EXISTS pending_deletes (
    point_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS pending_writes (
    point_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS refusals (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, document_id)
);
CREATE TABLE IF NOT EXISTS document_readers (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    readers TEXT NOT NULL,
    PRIMARY KEY (source, document_id)
);
CREATE TABLE IF NOT EXISTS generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    source TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    report TEXT NOT NULL
);
"""


class LedgerEntry(BaseModel):
    source: str
    document_id: str
    content_hash: str
    version: str
    fingerprint: str
    point_ids: list[str]
    # What the document's points store as readers; None: recorded before access control (or
    # adopted from the index), so the next run writes them.
    readers: list[str] | None = None


class Refusal(NamedTuple):
    version: str
    content_hash: str
    reason: str


class SourceSummary(BaseModel):
    source: str
    documents: int
    chunks: int
    last_run_started: float | None = None
    last_run_finished: float | None = None
    last_report: dict[str, Any] | None = None


class Ledger:
    def __init__(self, path: Path, on_change: Callable[[], None] | None = None):
        """`on_change`: called inside each transaction that bumps the generation (replicas
        bump the shared one with it; if it fails, the commit does not happen)."""
        self.path = path
        self._on_change = on_change
        self._db, self._lock = connect(
            path, SCHEMA, pragmas=("PRAGMA synchronous=FULL",),  # a commit survives power loss, not just kill -9
            remedy="Restore it from a backup, or move it away and run `ragline ingest`: the ledger is rebuilt "
            "from the index, and documents are re-read from their sources",
        )  # fmt: skip

    @serialised
    def documents(self, source: str) -> dict[str, LedgerEntry]:
        rows = self._db.execute(
            "SELECT d.document_id, content_hash, version, fingerprint, point_ids, r.readers"
            " FROM documents d LEFT JOIN document_readers r ON r.source = d.source AND r.document_id = d.document_id"
            " WHERE d.source = ?",
            (source,),
        )
        # Rows this class wrote are valid already: unvalidated construction keeps an unchanged
        # re-run of a large source close to the cost of reading the source.
        return {
            doc_id: LedgerEntry.model_construct(
                source=source,
                document_id=doc_id,
                content_hash=content_hash,
                version=version,
                fingerprint=fingerprint,
                point_ids=json.loads(point_ids),
                readers=json.loads(readers) if readers is not None else None,
            )
            for doc_id, content_hash, version, fingerprint, point_ids, readers in rows
        }

    @serialised
    def commit(
        self,
        *,
        upserts: Iterable[LedgerEntry] = (),
        removals: Iterable[tuple[str, str]] = (),
        stale_point_ids: Iterable[str] = (),
    ) -> None:
        """Record written documents, forget removed ones and queue stale points, atomically."""
        now = time.time()
        upserts = list(upserts)
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.source, e.document_id, e.content_hash, e.version, e.fingerprint,
                     json.dumps(e.point_ids), now)
                    for e in upserts
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO document_readers VALUES (?, ?, ?)",
                [(e.source, e.document_id, json.dumps(e.readers)) for e in upserts if e.readers is not None],
            )
            removals = list(removals)
            self._db.executemany("DELETE FROM documents WHERE source = ? AND document_id = ?", removals)
            self._db.executemany("DELETE FROM document_readers WHERE source = ? AND document_id = ?", removals)
            self._db.executemany(
                "INSERT OR IGNORE INTO pending_deletes VALUES (?)", [(p,) for p in stale_point_ids]
            )
            self._db.executemany(
                "DELETE FROM pending_writes WHERE point_id = ?",
                [(p,) for e in upserts for p in e.point_ids],
            )
            self._bump()

    @serialised
    def set_readers(self, source: str, document_id: str, readers: list[str]) -> None:
        """Record readers written to a document's points in place (a permission change)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO document_readers VALUES (?, ?, ?)",
                             (source, document_id, json.dumps(readers)))  # fmt: skip
            self._bump()

    @serialised
    def log_pending_writes(self, point_ids: Iterable[str]) -> None:
        """Record point ids before they are written, so a crash cannot leave them unowned."""
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO pending_writes VALUES (?)", [(p,) for p in point_ids])

    @serialised
    def unowned_pending_writes(self) -> list[str]:
        """Points a crashed run wrote (or may have written) that no document owns."""
        pending = {row[0] for row in self._db.execute("SELECT point_id FROM pending_writes")}
        if not pending:
            return []
        for (point_ids,) in self._db.execute("SELECT point_ids FROM documents"):
            pending.difference_update(json.loads(point_ids))
        return sorted(pending)

    @serialised
    def clear_pending_writes(self) -> None:
        with self._db:
            if self._db.execute("DELETE FROM pending_writes").rowcount:
                self._bump()  # a crashed run's points were visible, and recovery may have deleted some

    def _bump(self) -> None:
        """Inside a write transaction: what queries can find is about to differ."""
        self._db.execute("INSERT INTO generation VALUES (0, 1) ON CONFLICT(id) DO UPDATE SET value = value + 1")
        if self._on_change is not None:
            self._on_change()

    @serialised
    def generation(self) -> int:
        """A number every commit, readers change and deletion bumps: an answer cached at one
        generation is never served at another (a changed index never serves a stale answer)."""
        row = self._db.execute("SELECT value FROM generation WHERE id = 0").fetchone()
        return row[0] if row else 0

    @serialised
    def refusals(self, source: str, settings: str) -> dict[str, Refusal]:
        """Documents refused last run by type or size under these `settings`, as the
        connector saw them: an unchanged one is refused again without being read."""
        rows = self._db.execute(
            "SELECT document_id, version, content_hash, reason FROM refusals WHERE source = ? AND settings = ?",
            (source, settings),
        )
        return {doc_id: Refusal(version, content_hash, reason) for doc_id, version, content_hash, reason in rows}

    @serialised
    def replace_refusals(self, source: str, settings: str, refusals: dict[str, Refusal]) -> None:
        with self._db:
            self._db.execute("DELETE FROM refusals WHERE source = ?", (source,))
            self._db.executemany(
                "INSERT INTO refusals VALUES (?, ?, ?, ?, ?, ?)",
                [(source, doc_id, r.version, r.content_hash, settings, r.reason) for doc_id, r in refusals.items()],
            )

    @serialised
    def record_run(self, source: str, started_at: float, report: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?)", (source, started_at, time.time(), json.dumps(report))
            )

    @serialised
    def sources(self) -> list[SourceSummary]:
        """Every source with its document and chunk counts and its last run's report."""
        summaries: dict[str, SourceSummary] = {}
        for source, point_ids in self._db.execute("SELECT source, point_ids FROM documents"):
            summary = summaries.setdefault(source, SourceSummary(source=source, documents=0, chunks=0))
            summary.documents += 1
            summary.chunks += len(json.loads(point_ids))
        last_runs = self._db.execute(
            "SELECT source, started_at, finished_at, report FROM runs r WHERE finished_at ="
            " (SELECT MAX(finished_at) FROM runs WHERE source = r.source)"
        )
        for source, started, finished, report in last_runs:
            summary = summaries.setdefault(source, SourceSummary(source=source, documents=0, chunks=0))
            summary.last_run_started, summary.last_run_finished = started, finished
            summary.last_report = json.loads(report)
        return sorted(summaries.values(), key=lambda s: s.source)

    @serialised
    def pending_deletes(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT point_id FROM pending_deletes")]

    @serialised
    def clear_pending(self, point_ids: Iterable[str]) -> None:
        with self._db:
            self._db.executemany(
                "DELETE FROM pending_deletes WHERE point_id = ?", [(p,) for p in point_ids]
            )
            self._bump()  # the superseded points are gone now

    @serialised
    def close(self) -> None:
        self._db.close()
