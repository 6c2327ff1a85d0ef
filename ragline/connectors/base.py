"""What every connector yields: documents with a stable id, a version and a content hash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel


class SourceItem(BaseModel):
    """One document as a connector sees it, before any parsing.

    `document_id` is stable across runs (so re-ingest updates instead of duplicating),
    `version` is cheap to read (mtime/etag), `content_hash` decides whether work is needed.
    """

    document_id: str
    source: str
    path: Path
    version: str
    content_hash: str


class Connector(ABC):
    @property
    @abstractmethod
    def source(self) -> str:
        """Stable name of the source this connector reads (ledger and payload key)."""

    @abstractmethod
    def items(self) -> Iterator[SourceItem]:
        """Every document currently in the source."""
