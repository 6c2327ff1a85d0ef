"""Principals and the effective set a search is filtered by.

A chunk stores its readers as a keyword array (`READERS_FIELD`); a caller reads it when its
effective principals (itself, its groups flattened, and `public`) share at least one entry
with that array. The match is exact (a keyword payload index), so `user:ann-1` never reads
what `user:ann` may.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

PUBLIC = "public"
READERS_FIELD = "readers"
KINDS = ("user", "group")
# A kind, a colon, then a name without whitespace or control characters.
_PRINCIPAL = re.compile(r"(user|group):[^\s\x00-\x1f\x7f]+")


class AccessError(PermissionError):
    """A call that access control refuses: no identity where one is required, a malformed
    one, or a group resolver that cannot answer (never answered with partial results)."""


def check_principal(value: object, *, where: str = "principal") -> str:
    """`value` if it is `user:NAME`, `group:NAME` or `public`; AccessError naming it otherwise."""
    if isinstance(value, str) and (value == PUBLIC or _PRINCIPAL.fullmatch(value)):
        return value
    raise AccessError(
        f"{where} {value!r} is malformed: write 'user:NAME', 'group:NAME' or 'public' (no spaces)"
    )


def check_principals(values: Iterable[object], *, where: str = "principal") -> list[str]:
    """Each of `values` checked, duplicates dropped, sorted (the stored and hashed form)."""
    if isinstance(values, str):
        raise AccessError(f"{where}s must be a list of principals, not the string {values!r}")
    return sorted({check_principal(value, where=where) for value in values})


def config_principals(values: list[str] | None, *, where: str = "principal") -> list[str] | None:
    """`check_principals` for a config field validator (pydantic reports ValueErrors)."""
    try:
        return None if values is None else check_principals(values, where=where)
    except AccessError as exc:
        raise ValueError(str(exc)) from None


def principals_hash(principals: Iterable[str]) -> str:
    """A stable short hash of a principal set: what caches and traces keep instead of names."""
    joined = "\n".join(sorted(set(principals)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Viewer:
    """Who a call reads as. `readable` is the effective principal set a chunk's readers must
    meet, or None for an unrestricted call (access disabled and no identity given, or an
    admin). `partition` keys every cache that can hold content."""

    readable: frozenset[str] | None
    declared: tuple[str, ...] = ()
    admin: bool = False

    @classmethod
    def unrestricted(cls) -> Viewer:
        return cls(readable=None)

    @property
    def restricted(self) -> bool:
        return self.readable is not None

    @property
    def partition(self) -> str | None:
        """None for unrestricted calls (their cache keys stay as before access control), else
        the hash of the effective set: two callers share cached answers only when they may
        read exactly the same documents."""
        if self.readable is None:
            return "admin" if self.admin else None
        return principals_hash(self.readable)

    def may_read(self, readers: Iterable[str] | None) -> bool:
        """Whether a chunk with these readers is readable (no readers: nobody but an
        unrestricted caller)."""
        if self.readable is None:
            return True
        return bool(readers) and not self.readable.isdisjoint(readers)
