"""The vector store contract: what ingest and retrieval need from Qdrant, nothing more.

Two implementations share it (and one contract test suite): `EdgeStore` runs the real Qdrant
engine in-process (qdrant-edge-py, the default) and `ServerStore` talks to a Qdrant server
through qdrant-client (its `:memory:` mode speaks the same API for tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field

# Payload keys every chunk point carries; payload indexes exist on the keyword ones.
INDEXED_KEYWORD_FIELDS = ("document_id", "source")


class StoredPoint(BaseModel):
    """A point as written to the store: a UUID string id, the dense vector and its payload."""

    id: str
    vector: list[float]
    payload: dict[str, Any] = Field(default_factory=dict)


class ScoredPoint(BaseModel):
    id: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)


class VectorStore(ABC):
    """One collection of chunk points with a named dense vector (cosine distance).

    `filters` everywhere is a mapping of payload key to required value (exact match);
    a list value means "any of".
    """

    @abstractmethod
    def ensure_collection(self, dim: int) -> None:
        """Create the collection and payload indexes if missing; fail clearly on a dim mismatch."""

    @abstractmethod
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or overwrite points by id (idempotent for deterministic ids)."""

    @abstractmethod
    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""

    @abstractmethod
    def search(
        self, vector: Sequence[float], top_k: int, filters: dict[str, Any] | None = None
    ) -> list[ScoredPoint]:
        """Nearest points by cosine similarity, best first."""

    @abstractmethod
    def count(self, filters: dict[str, Any] | None = None) -> int:
        """Exact number of points (matching `filters`)."""

    @abstractmethod
    def iter_points(self, filters: dict[str, Any] | None = None) -> Iterator[ScoredPoint]:
        """Every point (matching `filters`) with its payload; score is 0. Order unspecified."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store (the embedded engine allows one process per directory)."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
