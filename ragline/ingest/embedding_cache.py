"""Embedding cache keyed by (model id, text hash): identical text is never embedded twice.

Re-chunking a document mostly reproduces chunks already seen, and re-ingesting a moved or
re-exported file reproduces all of them; both then cost no model time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ragline.ingest.sqlite import connect, serialised

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
);
"""
_LOOKUP_BATCH = 500  # stays under SQLite's bound-parameter limit


class EmbeddingCache:
    def __init__(self, path: Path):
        self._db, self._lock = connect(
            path, SCHEMA, remedy="Delete it: it only saves model time, and is rebuilt as documents are embedded"
        )

    @serialised
    def get(self, model: str, text_hashes: Iterable[str]) -> dict[str, list[float]]:
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, list[float]] = {}
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            batch = wanted[start : start + _LOOKUP_BATCH]
            rows = self._db.execute(
                f"SELECT text_hash, vector FROM vectors WHERE model = ? AND text_hash IN ({','.join('?' * len(batch))})",
                [model, *batch],
            )
            for text_hash, blob in rows:
                found[text_hash] = np.frombuffer(blob, dtype=np.float32).tolist()
        return found

    @serialised
    def put(self, model: str, vectors: Mapping[str, list[float]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
            )

    @serialised
    def close(self) -> None:
        self._db.close()
