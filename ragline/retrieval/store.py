"""The vector store contract: what ingest and retrieval need from Qdrant, nothing more.

Two implementations share it (and one contract test suite): `EdgeStore` runs the real Qdrant
engine in-process (qdrant-edge-py, the default) and `ServerStore` talks to a Qdrant server
through qdrant-client (its `:memory:` mode speaks the same API for tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

# Payload keys every chunk point carries; payload indexes exist on the keyword ones.
INDEXED_KEYWORD_FIELDS = ("document_id", "source")
# The payload field whose text feeds the sparse BM25 vector.
TEXT_FIELD = "text"

SearchMode = Literal["dense", "sparse", "hybrid"]
# Filters: payload key -> condition. A scalar matches exactly; a list matches any of its values;
# a dict is a range ({"gte": 3, "lt": 10}; ISO-8601 strings make it a datetime range) or an
# existence test ({"exists": True}: a non-null, non-empty value; missing, null and [] are absent).
# Conditions on different keys must all hold. Parsed by `ragline.retrieval.filters`.
Filters = dict[str, Any]


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
    """One collection of chunk points: a named dense vector (cosine distance) and a named
    sparse BM25 vector the store computes from the payload's `TEXT_FIELD`.

    `filters` everywhere follow the `Filters` format above, in every search mode.
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
        self,
        vector: Sequence[float] | None,
        top_k: int,
        filters: Filters | None = None,
        *,
        text: str | None = None,
        mode: SearchMode = "dense",
        candidates: int | None = None,
    ) -> list[ScoredPoint]:
        """Best points first. `dense`: cosine on `vector`; `sparse`: BM25 on `text`;
        `hybrid`: both as prefetches (`candidates` each) fused with RRF inside Qdrant."""

    @abstractmethod
    def count(self, filters: Filters | None = None) -> int:
        """Exact number of points (matching `filters`)."""

    @abstractmethod
    def iter_points(self, filters: Filters | None = None) -> Iterator[ScoredPoint]:
        """Every point (matching `filters`) with its payload; score is 0. Order unspecified."""

    def optimize(self) -> None:
        """Build HNSW (and other) indexes where the engine needs an explicit call; call it
        after a large ingest. A no-op where the engine optimizes in the background."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store (the embedded engine allows one process per directory)."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_search_args(
    vector: Sequence[float] | None, text: str | None, mode: str, candidates: int | None
) -> None:
    """The same argument errors from every store, before it looks at its data."""
    if mode not in get_args(SearchMode):
        raise ValueError(f"search mode must be one of {get_args(SearchMode)}, got {mode!r}")
    if mode != "sparse" and vector is None:
        raise ValueError(f"{mode} search needs a query vector")
    if mode != "dense" and not (text and text.strip()):
        raise ValueError(f"{mode} search needs query text")
    if candidates is not None and candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")


def prefetch_limit(top_k: int, candidates: int | None) -> int:
    """Candidates each hybrid prefetch hands to RRF: enough depth for fusion to reorder."""
    return candidates or max(top_k * 4, 50)
