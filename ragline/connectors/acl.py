"""Where connectors find a document's readers: file mode bits, an ACL mapping file, a column.

Every answer is a checked, sorted principal list, or None when the source does not know
(then the source's configured readers, else its owners, apply). A lookup that fails is
never answered with None, [] or `public`: the connector reports the document as failed and
keeps it (its previous version and readers stay), and an ACL file that cannot be used
fails the whole run, which then deletes nothing.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ragline.access.principals import PUBLIC, AccessError, check_principals
from ragline.connectors.base import ConnectorError

try:  # POSIX only; `permissions = "posix"` refuses to start without them
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

_RULE_KEYS = {"glob", "readers"}


class ReadersUnknown(Exception):
    """The readers of one document cannot be determined this run; the message is the reason."""


@dataclass(frozen=True)
class AclRule:
    glob: str
    readers: tuple[str, ...]


@dataclass(frozen=True)
class AclFile:
    """A parsed `acl_file`: rules in file order; the first whose glob matches decides."""

    path: Path
    rules: tuple[AclRule, ...]
    identity: tuple[int, int]  # (device, inode) of the file read, so a link to it is not ingested either

    def readers(self, relative: str) -> list[str] | None:
        """The first matching rule's readers; None when no rule matches (unknown). Globs use
        the connector's include/exclude matching (fnmatch: `*` also crosses `/`)."""
        for rule in self.rules:
            if fnmatch(relative, rule.glob):
                return list(rule.readers)
        return None


def load_acl_file(path: Path) -> AclFile:
    """The rules of a TOML file of `[[rules]] glob = "hr/**"  readers = ["group:hr"]`; a
    ConnectorError naming the file (and the rule, 1-based) for anything unusable, since a
    half-understood ACL would expose or hide documents silently."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConnectorError(f"acl_file {path}: not a regular file")
            data = tomllib.loads(handle.read().decode("utf-8"))
    except OSError as exc:
        raise ConnectorError(f"acl_file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConnectorError(f"acl_file {path}: not UTF-8: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConnectorError(f"acl_file {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise ConnectorError(f"acl_file {path}: unknown key(s) {unknown}; write [[rules]] tables")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConnectorError(f"acl_file {path}: `rules` must be an array of tables ([[rules]])")
    rules = tuple(_rule(path, number, raw) for number, raw in enumerate(raw_rules, start=1))
    return AclFile(path=path, rules=rules, identity=(info.st_dev, info.st_ino))


def _rule(path: Path, number: int, raw: Any) -> AclRule:
    where = f"acl_file {path}: [[rules]] #{number}"
    if not isinstance(raw, dict):
        raise ConnectorError(f"{where}: not a table")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ConnectorError(f"{where}: unknown key(s) {unknown}; expected glob and readers")
    glob = raw.get("glob")
    if not isinstance(glob, str) or not glob:
        raise ConnectorError(f"{where}: needs a non-empty `glob` string")
    if "readers" not in raw:
        raise ConnectorError(f"{where} (glob {glob!r}): needs `readers` (a list of principals; [] for nobody)")
    try:
        readers = check_principals(raw["readers"], where="reader")
    except (AccessError, TypeError) as exc:  # TypeError: not a list at all
        raise ConnectorError(f"{where} (glob {glob!r}): {exc}") from None
    return AclRule(glob=glob, readers=tuple(readers))


def posix_available() -> bool:
    return pwd is not None and grp is not None


class PosixReaders:
    """Readers from a file's owner, group and read bits. Names are looked up once per
    listing (name services can be remote); an id without a name is `user:uid-N` /
    `group:gid-N`, so the document is still restricted, never public."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def __call__(self, info: os.stat_result) -> list[str]:
        try:
            found = []
            if info.st_mode & stat.S_IRUSR:
                found.append(f"user:{_name(self._users, info.st_uid, lambda uid: pwd.getpwuid(uid).pw_name, 'uid')}")
            if info.st_mode & stat.S_IRGRP:
                found.append(f"group:{_name(self._groups, info.st_gid, lambda gid: grp.getgrgid(gid).gr_name, 'gid')}")
            if info.st_mode & stat.S_IROTH:
                found.append(PUBLIC)
            return check_principals(found, where="owner/group principal")
        except Exception as exc:  # a failing name service, an unusable name: this file fails, not the run
            raise ReadersUnknown(f"cannot determine readers from owner and mode: {exc}") from exc


def _name(cache: dict[int, str], number: int, lookup: Callable[[int], str], kind: str) -> str:
    if number not in cache:
        try:
            cache[number] = lookup(number)
        except KeyError:  # no such entry in the user or group database
            cache[number] = f"{kind}-{number}"
    return cache[number]


def column_readers(value: Any) -> list[str] | None:
    """A readers column value: a native list (PostgreSQL text[]), a JSON array string, or a
    comma-separated string. NULL is None (unknown); a blank string or [] is nobody but an
    admin. ReadersUnknown for anything else or a malformed principal."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        entries = list(value)
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                entries = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ReadersUnknown(f"not a JSON array: {exc.msg} (column {exc.colno})") from None
            if not isinstance(entries, list):
                raise ReadersUnknown(f"not a JSON array: {type(entries).__name__}")
        else:
            entries = [part.strip() for part in stripped.split(",")] if stripped else []
    else:
        raise ReadersUnknown(
            f"expected a list, a JSON array or a comma-separated string, got {type(value).__name__}"
        )
    try:
        return check_principals(entries, where="reader")
    except AccessError as exc:
        raise ReadersUnknown(str(exc)) from None
