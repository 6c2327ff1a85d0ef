"""What every connector yields: documents with a stable id, a version and a content hash.

A connector reads one source (a folder, a site, a table, a dataset file) and yields one
`SourceItem` per document currently in it. The ingest pipeline decides from the content
hash whether any work is needed, so a connector should make hashing cheap and never
parse. Third-party connectors register a factory under the `ragline.connectors`
entry-point group (see `ragline.connectors.registry`).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from ragline.access.readers import SourceAccess


class KnownDocument(BaseModel):
    """What the ledger remembers of a document from the last successful run."""

    version: str
    content_hash: str


class SourceItem(BaseModel):
    """One document as a connector sees it, before any parsing.

    Exactly one of `path` (a local file), `content` (raw bytes; `filename` picks the parser)
    or `text` (already plain text) carries the document, or none of them when the source
    confirmed the document is unchanged (e.g. an HTTP 304): then `content_hash` must be the
    known hash the connector was given.
    """

    document_id: str = Field(description="Stable across runs: re-ingest updates, never duplicates.")
    source: str
    version: str = Field(description="Cheap change marker: mtime, ETag, updated-at.")
    content_hash: str = Field(description="sha256 of the content; decides whether work is needed.")
    path: Path | None = None
    content: bytes | None = None
    text: str | None = None
    filename: str | None = Field(None, description="Name whose extension selects the parser for `content`.")
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="Extra payload stored with every chunk.")
    readers: list[str] | None = Field(
        None, description="Principals that may read the document, where the source knows them (mode bits, an ACL "
        "file or column); None: unknown, the source's configured readers (else owners) apply.",
    )
    identity: tuple[int, int] | None = Field(
        None, description="(device, inode) of the file `path` named when the connector checked it: the loader "
        "parses that file only, or fails the document if `path` now names another.",
    )

    @model_validator(mode="after")
    def _one_body(self) -> SourceItem:
        bodies = [b for b in (self.path, self.content, self.text) if b is not None]
        if len(bodies) > 1:
            raise ValueError(f"document {self.document_id!r}: give one of path, content or text")
        if self.content is not None and not self.filename:
            raise ValueError(f"document {self.document_id!r}: content needs a filename to pick its parser")
        return self

    @property
    def has_body(self) -> bool:
        return self.path is not None or self.content is not None or self.text is not None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


# How a checked file is opened, by the connector that checks it and the loader that parses
# it: never follow a final link, never block on a FIFO swapped in, never leak into children.
OPEN_NO_FOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class ConnectorError(RuntimeError):
    """The source itself cannot be read (bad config, unreachable, unmounted): fail the run,
    delete nothing."""


class Connector(ABC):
    """A source of documents.

    Besides `items`, a connector may expose two attributes the pipeline reads after
    iterating: `errors` (list of (document id, reason): documents it could not read, each
    reported as failed) and `keep` (set of known document ids that still exist but could not
    be read this run, e.g. a 503: they are never deleted for that). A document whose ACL
    lookup failed belongs in both: it keeps its previous version and readers.

    `access` holds the source's configured default readers and owners (`[[sources]]`
    `readers` / `owners`), for documents whose `SourceItem.readers` is None.
    """

    errors: list[tuple[str, str]]
    keep: set[str]
    access: SourceAccess = SourceAccess()

    @property
    @abstractmethod
    def source(self) -> str:
        """Stable name of the source this connector reads (ledger and payload key)."""

    @abstractmethod
    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Every document currently in the source.

        `known` maps document ids to what the last successful run saw, so a connector can
        skip downloads of unchanged documents (ETag / If-Modified-Since / updated-at).
        """
