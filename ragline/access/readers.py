"""What a document's chunks store as readers.

In order: what the connector knows for the document (file mode bits, an ACL file, an ACL
column), else the source's configured `readers`, else the source's `owners`: a document
whose readers are unknown is never public by default (with no owners configured, only an
admin reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragline.access.principals import check_principals


@dataclass(frozen=True)
class SourceAccess:
    """A source's defaults: `readers` for documents the connector has no ACL for, `owners`
    when neither is known."""

    readers: tuple[str, ...] | None = None
    owners: tuple[str, ...] = ()

    @classmethod
    def of(cls, readers: Sequence[str] | None, owners: Sequence[str] = ()) -> SourceAccess:
        return cls(
            tuple(check_principals(readers, where="readers entry")) if readers is not None else None,
            tuple(check_principals(owners, where="owners entry")),
        )


def document_readers(known: Sequence[str] | None, access: SourceAccess, *, document: str) -> list[str]:
    """The sorted readers to store; AccessError naming the document for a malformed entry."""
    if known is not None:
        return check_principals(known, where=f"{document}: reader")
    if access.readers is not None:
        return list(access.readers)
    return list(access.owners)
