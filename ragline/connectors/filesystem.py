"""Local files: a root directory (or one file), include/exclude globs, no hidden files,
and never a symlink that leads out of the root."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, Field

from ragline.connectors.base import Connector, SourceItem


class FilesystemConfig(BaseModel):
    root: Path
    include: list[str] = Field(default_factory=lambda: ["*"], description="Globs on the path relative to root.")
    exclude: list[str] = Field(default_factory=list)
    include_hidden: bool = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FilesystemConnector(Connector):
    def __init__(self, config: FilesystemConfig):
        root = config.root.expanduser()
        if not root.exists():
            raise FileNotFoundError(f"path {config.root} does not exist")
        self.config = config
        self.root = root.resolve()

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

    def _paths(self) -> Iterator[Path]:
        if self.root.is_file():
            yield self.root
            return
        for directory, subdirs, files in os.walk(self.root, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                path = Path(directory) / name
                # A symlinked file is fine while its target stays inside the root.
                if path.is_symlink() and not path.resolve().is_relative_to(self.root):
                    continue
                if path.is_file():
                    yield path

    def items(self) -> Iterator[SourceItem]:
        for path in self._paths():
            relative = path.name if self.root.is_file() else path.relative_to(self.root).as_posix()
            if not self._wanted(relative):
                continue
            stat = path.stat()
            yield SourceItem(
                document_id=relative,
                source=self.source,
                path=path,
                version=f"{stat.st_mtime_ns}:{stat.st_size}",
                content_hash=file_sha256(path),
            )
