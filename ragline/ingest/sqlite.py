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

F = TypeVar("F", bound=Callable[..., Any])


def connect(path: Path) -> tuple[sqlite3.Connection, threading.RLock]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, check_same_thread=False), threading.RLock()


def serialised(method: F) -> F:
    """Run the method holding the object's `_lock` (the lock `connect` returned)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]
