"""One run of a source at a time, across processes: an exclusive `flock` on
`<store>/runs/<source>.lock`, held for the whole run.

Taken without waiting: a busy lock means the source is running somewhere, and the caller
records a skipped run instead of queueing a second one. The OS drops the lock when its
process dies (kill -9 included), so a crashed run never blocks the next.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ragline.processes import open_lock_file, try_lock

LOCKS_DIR = "runs"


def lock_path(store_dir: Path, source: str) -> Path:
    """A file name safe for any source name (`file:///srv/docs` included), and distinct per name."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._")[:60]
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    return Path(store_dir) / LOCKS_DIR / f"{readable}-{digest}.lock"


class SourceLock:
    """The held lock of one source; `release` (or closing the process) frees it."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    @classmethod
    def try_take(cls, store_dir: Path, source: str) -> SourceLock | None:
        """The lock, or None when another run (in this process or another) holds it."""
        path = lock_path(store_dir, source)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_lock_file(path)
        try:
            taken = try_lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not taken:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
