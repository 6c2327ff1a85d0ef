"""Local files: a root directory (or one file), include/exclude globs, no hidden files,
and never a symlink that leads out of the root.

A listing error is never a deletion: a directory that cannot be listed (permissions, a flaky
network mount) keeps every known document below it, and a file that cannot be read keeps
its previous version; both are reported as failed, and the rest of the source ingests.

The root check cannot be raced: each file is opened once without following links
(`O_NOFOLLOW`, through the target of a link that stays inside the root), the open descriptor
is checked to be a regular file inside the root, and the hash is read from it. The item
carries that file's (device, inode), and the loader parses only that file, so swapping a
file for a link between listing and parsing gets a failed document, never an outside file.

File names that are not valid UTF-8 keep their bytes for opening; their document ids show
the undecodable bytes as backslash escapes, so ids, payloads and `--json` stay valid UTF-8.

Readers (who may read a document, `ragline.connectors.acl`) are opt-in: `permissions = "posix"`
takes them from the owner, group and read bits of the same descriptor the hash is read from,
and `acl_file` maps globs to readers (its first matching rule wins over the mode bits). Both
are re-evaluated every run, so a chmod or an edited rule with unchanged content updates the
stored readers without re-embedding. A file whose readers cannot be determined is failed and
kept (its previous version and readers stay), never ingested with unknown or public readers."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragline.connectors.acl import AclFile, PosixReaders, ReadersUnknown, load_acl_file, posix_available
from ragline.connectors.base import OPEN_NO_FOLLOW, Connector, ConnectorError, KnownDocument, SourceItem
from ragline.text import path_text


class FilesystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path
    include: list[str] = Field(default_factory=lambda: ["*"], description="Globs on the path relative to root.")
    exclude: list[str] = Field(default_factory=list)
    include_hidden: bool = False
    permissions: Literal["none", "posix"] = Field(
        "none", description="posix: each file's readers from its mode bits: owner-readable -> user:<owner>, "
        "group-readable -> group:<group>, other-readable -> public (an id without a name: user:uid-N / group:gid-N; "
        "readable by nobody: [], only an admin). none: readers unknown, the source's readers (else owners) apply.",
    )
    acl_file: Path | None = Field(
        None, description='A TOML file of [[rules]] glob = "hr/**" readers = ["group:hr"], globs matched like '
        "include/exclude against the path relative to root; the first matching rule wins (also over posix bits), "
        "a file no rule matches falls back to posix bits or, without them, the source's readers. A relative path "
        "is taken from the current directory (like root); read every run; an unreadable file or a bad rule fails "
        "the run. Never ingested itself.",
    )


class FilesystemConnector(Connector):
    def __init__(self, config: FilesystemConfig):
        root = config.root.expanduser()
        if not root.exists():
            raise ConnectorError(f"path {config.root} does not exist")
        if not (root.is_file() or root.is_dir()):
            raise ConnectorError(
                f"path {config.root} is neither a regular file nor a directory (a FIFO, socket or device); "
                "ragline reads files and folders"
            )
        self.config = config
        self.root = root.resolve()
        if config.permissions == "posix" and not posix_available():
            raise ConnectorError("permissions = 'posix' needs a POSIX system (user and group databases)")
        self.acl_path = config.acl_file.expanduser().resolve() if config.acl_file is not None else None
        self._acl_relative = self._inside(self.acl_path) if self.acl_path is not None else None
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

    def _inside(self, path: Path) -> str | None:
        """The document id `path` would have, if the listing can reach it."""
        if path == self.root or (self.root.is_dir() and path.is_relative_to(self.root)):
            return path_text(self._relative(path))
        return None

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
                except FileNotFoundError:
                    continue  # a dangling link (its target was deleted) or a file deleted meanwhile: gone
                except (OSError, RuntimeError) as exc:  # a symlink loop
                    self.errors.append((path_text(self._relative(path)), f"cannot resolve: {exc}"))

    def _open(self, path: Path) -> tuple[int, os.stat_result, Path] | None:
        """An open descriptor of the regular file `path` names, its stat and its real path;
        None when it leads out of the root or is not a regular file."""
        target = path.resolve(strict=True) if path.is_symlink() else path  # an inside link is read via its target
        descriptor = os.open(target, OPEN_NO_FOLLOW)
        try:
            info = os.fstat(descriptor)
            if stat.S_ISREG(info.st_mode) and _real_path(descriptor, target).is_relative_to(self.root):
                return descriptor, info, target
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)
        return None

    def _unreadable_but_unchanged(
        self, path: Path, relative: str, known: Mapping[str, KnownDocument], readers: _Readers
    ) -> SourceItem | None:
        """A file this process may not read, whose mtime and size say it has not changed since
        the last run: the last run's hash stands (the loader still refuses to open it)."""
        info = path.stat()
        version = f"{info.st_mtime_ns}:{info.st_size}"
        previous = known.get(relative)
        if previous is None or previous.version != version or readers.is_acl_file(info):
            return None
        return SourceItem(
            document_id=relative, source=self.source, path=path, version=version,
            content_hash=previous.content_hash, identity=(info.st_dev, info.st_ino), readers=readers(relative, info),
        )  # fmt: skip

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Files under the root; a file whose mtime and size match the last run is not re-read
        (the same trust make and rsync place in them)."""
        self.errors, self.keep, self._unlisted = [], set(), []
        readers = _Readers(
            load_acl_file(self.acl_path) if self.acl_path is not None else None,
            PosixReaders() if self.config.permissions == "posix" else None,
        )  # read once per listing, before anything is yielded: a bad ACL file fails the run
        single_file = self.root.is_file()
        for path in self._paths():
            relative = path_text(self._relative(path))
            if relative == self._acl_relative or (not single_file and not self._wanted(relative)):
                continue
            try:
                try:
                    opened = self._open(path)
                except PermissionError:
                    if item := self._unreadable_but_unchanged(path, relative, known, readers):
                        yield item  # nothing to read: skipped as unchanged, or refused again from the ledger
                        continue
                    raise
                if opened is None:
                    continue
                descriptor, info, target = opened
                try:
                    if readers.is_acl_file(info):
                        continue  # a link to the ACL file: configuration, not a document
                    document_readers = readers(relative, info)
                    version = f"{info.st_mtime_ns}:{info.st_size}"
                    previous = known.get(relative)
                    unchanged = previous is not None and previous.version == version
                    content_hash = previous.content_hash if unchanged else _sha256(descriptor)
                finally:
                    os.close(descriptor)
            except FileNotFoundError:
                continue  # deleted since it was listed: gone, like any deleted file
            except ReadersUnknown as exc:  # keeps its previous version and readers
                self.errors.append((relative, str(exc)))
                self.keep.add(relative)
                continue
            except (OSError, RuntimeError) as exc:
                self.errors.append((relative, f"cannot read: {getattr(exc, 'strerror', None) or exc}"))
                self.keep.add(relative)
                continue
            yield SourceItem(
                document_id=relative, source=self.source, path=target, version=version, content_hash=content_hash,
                identity=(info.st_dev, info.st_ino), readers=document_readers,
            )  # fmt: skip
        for directory, reason in self._unlisted:
            self.errors.append((path_text(directory), reason))
            prefix = "" if directory == "." else path_text(directory) + "/"
            self.keep.update(doc for doc in known if doc.startswith(prefix))


class _Readers:
    """One listing's readers: the ACL file's first matching rule, else the mode bits (with
    `permissions = "posix"`), else None (unknown)."""

    def __init__(self, acl: AclFile | None, posix: PosixReaders | None):
        self.acl, self.posix = acl, posix

    def is_acl_file(self, info: os.stat_result) -> bool:
        return self.acl is not None and (info.st_dev, info.st_ino) == self.acl.identity

    def __call__(self, relative: str, info: os.stat_result) -> list[str] | None:
        if self.acl is not None and (readers := self.acl.readers(relative)) is not None:
            return readers
        return self.posix(info) if self.posix is not None else None


def _real_path(descriptor: int, opened_as: Path) -> Path:
    """Where the open file really is: the kernel's answer on Linux, which no later rename or
    link swap can change; elsewhere the resolved name it was opened by."""
    proc = Path(f"/proc/self/fd/{descriptor}")
    try:
        return Path(os.readlink(proc))
    except OSError:
        return Path(os.path.realpath(opened_as))


def _sha256(descriptor: int) -> str:
    digest = hashlib.sha256()
    while block := os.read(descriptor, 1 << 20):
        digest.update(block)
    return digest.hexdigest()
