"""Who owns a store directory: an exclusive `flock` on `<store>/owner.lock`, taken before the
engine opens the shard.

Asking the engine instead is not safe: in qdrant-edge 0.9 a second `EdgeShard.load` fails on
the WAL lock only after deleting the open writer's tracker journal, so the owner's next
flush fails (tests/integration/test_store_ownership.py keeps a canary of that). The lock
file also records who holds it (pid, command, since when, and the address a server
advertises), so that a refused opener can name the owner and a client can route to it.
The OS drops an flock when its process dies, kill -9 included: a record left behind by a
dead owner is simply taken over.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from ragline.errors import StoreBusyError
from ragline.processes import open_lock_file, process_alive, try_lock

LOCK_FILE = "owner.lock"
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class OwnerRecord:
    """What `owner.lock` says about the process holding it."""

    pid: int
    command: str
    started: str
    address: str | None = None

    def describe(self) -> str:
        """`PID 4242 (ragline serve at http://127.0.0.1:8000) since 2025-01-01T10:00:00+00:00`."""
        who = f"{self.command} at {self.address}" if self.address else self.command
        if self.pid == os.getpid():
            who += ", this process"
        return f"PID {self.pid} ({who}) since {self.started}"


def read_owner(store_dir: str | Path) -> OwnerRecord | None:
    """The owner's record, read without taking the lock (a reader must never make an opener
    fail); None when there is none, it is unreadable (being rewritten), or its process is gone."""
    try:
        fd = os.open(Path(store_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, encoding="utf-8") as fh:
            data = json.load(fh)
        record = OwnerRecord(int(data["pid"]), str(data["command"]), str(data["started"]), data.get("address"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if process_alive(record.pid) else None


def default_command() -> str:
    """`ragline serve` (also under `python -m ragline`), else the program's name; never the
    arguments, which may hold a question or a path the record need not publish."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    if argv0 is None:
        return "python"
    program = argv0.parent.name if argv0.name == "__main__.py" else argv0.name
    subcommand = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    return f"{program} {subcommand}" if program == "ragline" and subcommand else program


class StoreOwnership:
    """Holds `<store_dir>/owner.lock` from construction until `close()`.

    Another holder, in another process or in this one (flocks on separate opens conflict),
    makes the constructor raise `StoreBusyError` at once, or after polling for up to
    `open_timeout` seconds. The directory must exist.
    """

    def __init__(self, store_dir: str | Path, *, open_timeout: float = 0.0, command: str | None = None):
        self.store_dir = Path(store_dir)
        fd = open_lock_file(self.store_dir / LOCK_FILE)
        try:
            self._wait_for_lock(fd, open_timeout)
            self.record = OwnerRecord(
                os.getpid(), command or default_command(), datetime.now(UTC).isoformat(timespec="seconds")
            )
            self._fd: int | None = fd
            self._write()
        except BaseException:
            os.close(fd)
            raise

    def _wait_for_lock(self, fd: int, open_timeout: float) -> None:
        deadline = time.monotonic() + open_timeout
        while not try_lock(fd):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreBusyError(self.store_dir, read_owner(self.store_dir), open_timeout)
            time.sleep(min(POLL_SECONDS, remaining))

    def advertise(self, address: str) -> None:
        """Publish where this owner serves the store (e.g. `ragline serve`'s URL)."""
        self.record = replace(self.record, address=address)
        self._write()

    def _write(self) -> None:
        """In place: replacing the file would hand the next opener a fresh, unlocked inode.
        Written before truncating, so a reader sees the old record or the new one (or, rarely,
        a torn mix, which reads as no record)."""
        if self._fd is None:
            raise RuntimeError(f"the ownership of {self.store_dir} was released")
        data = json.dumps(asdict(self.record)).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def close(self) -> None:
        """Empty the record (a clean exit leaves no owner behind), then release the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
