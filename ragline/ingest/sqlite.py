"""The one threading rule of ragline's SQLite files (ledger, embedding cache): each object
owns one connection, opened for use from any thread, and serialises every use of it with
its own lock. A `Rag` built in one thread may then ingest in a worker and be queried and
closed from another, as thread-pool servers do."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ragline.errors import StoreError

F = TypeVar("F", bound=Callable[..., Any])


def connect(path: Path, schema: str, *, remedy: str, pragmas: tuple[str, ...] = ()) -> tuple[sqlite3.Connection, threading.RLock]:
    """The file opened and its schema ensured; a damaged, unreadable or read-only file is a
    `StoreError` naming it and `remedy`, never a bare sqlite3 traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        for pragma in pragmas:
            db.execute(pragma)
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        text = str(exc)
        if "readonly" in text or isinstance(exc, PermissionError):
            raise StoreError(path, f"cannot be written ({text})", "Give this process write access to the store "
                             "directory, or open a copy of it.") from None
        raise StoreError(path, f"is not a usable SQLite database ({text})", remedy) from None
    return db, threading.RLock()


def serialised(method: F) -> F:
    """Run the method holding the object's `_lock` (the lock `connect` returned)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]
