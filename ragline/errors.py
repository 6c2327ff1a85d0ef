"""Errors that name a store file and what to do about it."""

from __future__ import annotations

from pathlib import Path


class StoreError(RuntimeError):
    """A file or folder of the store cannot be used (damaged, unreadable, read-only, not a
    directory); the message names it and how to recover."""

    def __init__(self, path: Path | str, problem: str, remedy: str):
        self.path, self.problem, self.remedy = Path(path), problem, remedy
        super().__init__(f"{path}: {problem}. {remedy}")
