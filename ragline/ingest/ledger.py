"""The ingestion ledger: per source and document, what is in the index and how it was made.

SQLite in the store directory. A document is recorded only after its points are written,
and points it no longer owns are queued for deletion in the same transaction, so a crash
at any moment leaves either the old state or the new one plus a queue to finish.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

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
"""


class LedgerEntry(BaseModel):
    source: str
    document_id: str
    content_hash: str
    version: str
    fingerprint: str
    point_ids: list[str]


class Ledger:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.executescript(SCHEMA)

    def documents(self, source: str) -> dict[str, LedgerEntry]:
        rows = self._db.execute(
            "SELECT document_id, content_hash, version, fingerprint, point_ids"
            " FROM documents WHERE source = ?",
            (source,),
        )
        return {
            doc_id: LedgerEntry(
                source=source,
                document_id=doc_id,
                content_hash=content_hash,
                version=version,
                fingerprint=fingerprint,
                point_ids=json.loads(point_ids),
            )
            for doc_id, content_hash, version, fingerprint, point_ids in rows
        }

    def commit(
        self,
        *,
        upserts: Iterable[LedgerEntry] = (),
        removals: Iterable[tuple[str, str]] = (),
        stale_point_ids: Iterable[str] = (),
    ) -> None:
        """Record written documents, forget removed ones and queue stale points, atomically."""
        now = time.time()
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
                "DELETE FROM documents WHERE source = ? AND document_id = ?", list(removals)
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO pending_deletes VALUES (?)", [(p,) for p in stale_point_ids]
            )

    def pending_deletes(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT point_id FROM pending_deletes")]

    def clear_pending(self, point_ids: Iterable[str]) -> None:
        with self._db:
            self._db.executemany(
                "DELETE FROM pending_deletes WHERE point_id = ?", [(p,) for p in point_ids]
            )

    def close(self) -> None:
        self._db.close()
