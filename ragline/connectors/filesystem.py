"""Local files: a root directory (or one file), include/exclude globs, no hidden files,
and never a symlink that leads out of the root.

A listing error is never a deletion: a directory that cannot be listed (permissions, a flaky
network mount) keeps every known document below it, and a file that cannot be read keeps
its previous version; both are reported as failed, and the rest of the source ingests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_file


class FilesystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path
    include: list[str] = Field(default_factory=lambda: ["*"], description="Globs on the path relative to root.")
    exclude: list[str] = Field(default_factory=list)
    include_hidden: bool = False


class FilesystemConnector(Connector):
    def __init__(self, config: FilesystemConfig):
        root = config.root.expanduser()
        if not root.exists():
            raise ConnectorError(f"path {config.root} does not exist")
        self.config = config
        self.root = root.resolve()
        self.errors: list[tuple[str, str]] = []
        self.keep: set[str] = set()
        self._unlisted: list[tuple[str, str]] = []

    @property
    def source(self) -> str:
        return f"file://{self.root}"

    def _wanted(self, relative: str) -> bool:
        parts = relative.split("/")
        if not self.config.include_hidden and any(part.startswith(".") for part in parts):
            return False
        if not any(fnmatch(relative, pattern) for pattern in self.config.include):
            return False
        return not any(fnmatch(relative, pattern) for pattern in self.config.exclude)

    def _relative(self, path: Path) -> str:
        return path.name if self.root.is_file() else path.relative_to(self.root).as_posix()

    def _paths(self) -> Iterator[Path]:
        if self.root.is_file():
            yield self.root
            return

        def unlistable(error: OSError) -> None:
            where = Path(error.filename) if error.filename else self.root
            self._unlisted.append((self._relative(where), f"cannot list directory: {error.strerror or error}"))

        for directory, subdirs, files in os.walk(self.root, onerror=unlistable, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                path = Path(directory) / name
                try:
                    # A symlinked file is fine while its target stays inside the root.
                    if path.is_symlink() and not path.resolve(strict=True).is_relative_to(self.root):
                        continue
                    if path.is_file():
                        yield path
                except (OSError, RuntimeError) as exc:  # a dangling link or a symlink loop
                    self.errors.append((self._relative(path), f"cannot resolve: {exc}"))

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Files under the root; a file whose mtime and size match the last run is not re-read
        (the same trust make and rsync place in them)."""
        self.errors, self.keep, self._unlisted = [], set(), []
        single_file = self.root.is_file()
        for path in self._paths():
            relative = self._relative(path)
            if not single_file and not self._wanted(relative):
                continue
            try:
                stat = path.stat()
                version = f"{stat.st_mtime_ns}:{stat.st_size}"
                previous = known.get(relative)
                content_hash = previous.content_hash if previous and previous.version == version else sha256_file(path)
            except OSError as exc:
                self.errors.append((relative, f"cannot read: {exc.strerror or exc}"))
                self.keep.add(relative)
                continue
            yield SourceItem(
                document_id=relative, source=self.source, path=path, version=version, content_hash=content_hash
            )
        for directory, reason in self._unlisted:
            self.errors.append((directory, reason))
            prefix = "" if directory == "." else directory + "/"
            self.keep.update(doc for doc in known if doc.startswith(prefix))
