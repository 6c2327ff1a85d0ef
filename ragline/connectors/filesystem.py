"""Local files: a root directory (or one file), include/exclude globs, no hidden files,
and never a symlink that leads out of the root."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, Field

from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_file


class FilesystemConfig(BaseModel):
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

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Files under the root; a file whose mtime and size match the last run is not re-read
        (the same trust make and rsync place in them)."""
        single_file = self.root.is_file()
        for path in self._paths():
            relative = path.name if single_file else path.relative_to(self.root).as_posix()
            if not single_file and not self._wanted(relative):
                continue
            stat = path.stat()
            version = f"{stat.st_mtime_ns}:{stat.st_size}"
            previous = known.get(relative)
            content_hash = previous.content_hash if previous and previous.version == version else sha256_file(path)
            yield SourceItem(
                document_id=relative, source=self.source, path=path, version=version, content_hash=content_hash
            )
