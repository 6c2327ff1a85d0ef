"""Errors that name a store file or shared database, and what to do about it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragline.retrieval.ownership import OwnerRecord


class StoreError(RuntimeError):
    """A file or folder of the store cannot be used (damaged, unreadable, read-only, not a
    directory); the message names it and how to recover."""

    def __init__(self, path: Path | str, problem: str, remedy: str):
        self.path, self.problem, self.remedy = Path(path), problem, remedy
        super().__init__(f"{path}: {problem}. {remedy}")


class StoreBusyError(RuntimeError):
    """The store is held by another opener (another process, or another Rag or EdgeStore in
    this one): the embedded engine serves one at a time. `owner` is what its lock file says
    (None when it says nothing: a process outside ragline, or a record being rewritten)."""

    def __init__(self, path: Path | str, owner: OwnerRecord | None, waited: float = 0.0):
        self.path, self.owner, self.waited = Path(path), owner, waited
        holder = owner.describe() if owner else "a process that left no owner record"
        wait = f"raise store.open_timeout (waited {waited:g} s)" if waited > 0 else "set store.open_timeout to wait"
        super().__init__(
            f"store {path} is already open: owned by {holder}; stop that process, or route to it, or {wait}"
        )


class RemoteError(RuntimeError):
    """A failure the store's owner process (`ragline serve`) reported; `body` is its error
    object (`kind`, `message`, and what a caller can act on), `status` the HTTP status."""

    def __init__(self, body: dict, status: int):
        self.body, self.status = body, status
        super().__init__(body.get("message") or f"the server answered {status}")

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "error"))


class SharedStateError(RuntimeError):
    """The shared-state database could not be reached or used; nothing was decided on it.
    `detail`: the driver's error, without the database's address."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class TemporalUnreachable(RuntimeError):
    """Temporal's frontend did not answer (`ragline temporal`, `[temporal] enabled`): the
    message names the address and what to do."""


class ClusterUnreachable(RuntimeError):
    """The Ray cluster of `ingest.engine = "ray"` could not be reached or started in time;
    nothing was read or written. The message names the address and what to do."""


class EngineFailed(RuntimeError):
    """A Ray task or actor of an ingest failed or ran out of time (not a document's fault):
    the run stops; the batches written before it stay committed."""
