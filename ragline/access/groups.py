"""Group membership: who is in which group, flattened through nested groups.

A resolver answers one question, `groups_of(principal)`: the groups that list `principal`
as a direct member. `expand` walks that upwards (a member of `group:payroll`, which is a
member of `group:hr`, is in both), visiting each group once, so cycles end. The built-in
resolver reads a static file; others (LDAP, OIDC claims, SpiceDB, OpenFGA) register a
factory under the `ragline.group_resolvers` entry point. Any failure to answer raises
`GroupResolverError`: a query never runs on a partial membership.
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from ragline.access.principals import AccessError, check_principal

ENTRY_POINT_GROUP = "ragline.group_resolvers"


class GroupResolverError(AccessError):
    """The resolver could not say which groups a principal is in: the call fails."""


class GroupResolver(Protocol):
    def groups_of(self, principal: str) -> Iterable[str]:
        """The groups listing `principal` as a direct member (none: an empty iterable)."""
        ...


def expand(resolver: GroupResolver, principals: Iterable[str]) -> frozenset[str]:
    """`principals` and every group they are in, directly or through nested groups."""
    seen = set(principals)
    frontier = list(seen)
    while frontier:
        principal = frontier.pop()
        try:
            parents = list(resolver.groups_of(principal))
        except GroupResolverError:
            raise
        except Exception as exc:
            raise GroupResolverError(f"the group resolver failed for {principal!r}: {type(exc).__name__}: {exc}") from exc
        for group in parents:
            if not (isinstance(group, str) and group.startswith("group:")):
                raise GroupResolverError(f"the group resolver answered {group!r} for {principal!r}: not a group:NAME")
            if group not in seen:
                seen.add(group)
                frontier.append(group)
    return frozenset(seen)


class StaticGroups:
    """`[groups] "group:hr" = ["user:hana", "group:payroll"]` from a TOML or JSON file, re-read
    when the file changes. A file that cannot be read or holds a malformed entry fails every
    lookup (naming the file and entry) until it is fixed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._parents: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def groups_of(self, principal: str) -> Iterable[str]:
        return sorted(self._index().get(principal, ()))

    def _index(self) -> dict[str, set[str]]:
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError as exc:
                raise GroupResolverError(f"{self.path}: the groups file cannot be read ({exc.strerror or exc}); "
                                         "fix [access] groups_file") from None  # fmt: skip
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._parents = self._load()
                self._stamp = stamp
            return self._parents

    def _load(self) -> dict[str, set[str]]:
        try:
            raw = self.path.read_bytes()
            data = json.loads(raw) if self.path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
        except (OSError, ValueError) as exc:  # tomllib and json errors are ValueErrors
            raise GroupResolverError(f"{self.path}: the groups file cannot be parsed ({exc})") from None
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, dict):
            raise GroupResolverError(f'{self.path}: expected a [groups] table, e.g. "group:hr" = ["user:hana"]')
        parents: dict[str, set[str]] = {}
        for group, members in groups.items():
            where = f"{self.path}: groups.{group}"
            if check_principal(group, where=where).split(":", 1)[0] != "group":
                raise GroupResolverError(f"{where}: a group's name must start with 'group:'")
            if not isinstance(members, list):
                raise GroupResolverError(f"{where}: members must be a list of principals")
            for member in members:
                parents.setdefault(check_principal(member, where=f"{where} member"), set()).add(group)
        return parents


class CachedExpansion:
    """`expand` through `resolver`, remembered per principal set for `ttl` seconds: a lookup
    per query stays cheap, and a membership change reaches queries within `ttl`."""

    def __init__(self, resolver: GroupResolver, ttl: float, *, clock: Callable[[], float] = time.monotonic):
        self.resolver, self.ttl, self._clock = resolver, ttl, clock
        self._cache: dict[frozenset[str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, principals: Iterable[str]) -> frozenset[str]:
        key = frozenset(principals)
        now = self._clock()
        with self._lock:
            found = self._cache.get(key)
            if found and now - found[0] < self.ttl:
                return found[1]
        expanded = expand(self.resolver, key)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = (now, expanded)
        return expanded


class NoGroups:
    """No resolver configured: principals stand for themselves."""

    def groups_of(self, principal: str) -> Iterable[str]:
        return ()


def make_resolver(name: str | None, groups_file: str | None, settings: dict[str, Any]) -> GroupResolver:
    """The configured resolver: a plugin by entry-point name, else the groups file, else none."""
    if name:
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if name not in found:
            raise ValueError(f"[access] resolver = {name!r}: no such group resolver plugin "
                             f"(installed: {', '.join(sorted(found)) or 'none'}; entry point group {ENTRY_POINT_GROUP})")  # fmt: skip
        return found[name].load()(settings)
    if groups_file:
        return StaticGroups(groups_file)
    return NoGroups()
