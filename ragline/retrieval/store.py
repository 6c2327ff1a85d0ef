"""The vector store contract: what ingest and retrieval need from Qdrant, nothing more.

Two implementations share it (and one contract test suite): `EdgeStore` runs the real Qdrant
engine in-process (qdrant-edge-py, the default) and `ServerStore` talks to a Qdrant server
through qdrant-client (its `:memory:` mode speaks the same API for tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field

from ragline.access.principals import READERS_FIELD
from ragline.models import indexed_text
from ragline.retrieval.periods import PERIODS_FIELD, SERIES_FIELD

if TYPE_CHECKING:
    from ragline.retrieval.sparse import Bm25Documents

# Payload keys every chunk point carries; payload indexes exist on the keyword ones.
INDEXED_KEYWORD_FIELDS = ("document_id", "source", READERS_FIELD, PERIODS_FIELD, SERIES_FIELD)
# The payload fields whose text feeds the sparse BM25 vector: the chunk and its header.
TEXT_FIELD = "text"
CONTEXT_FIELD = "context_header"
# The named vector a second-stage bi-encoder's embedding of each chunk is stored under, when
# the collection was created with one (`ragline.retrieval.second_stage`).
SECOND_VECTOR = "second"
# Points fetched beyond top_k so that ties at the cut are broken by id, not by engine order.
TIE_MARGIN = 8

SearchMode = Literal["dense", "sparse", "hybrid"]
# Filters: payload key -> condition. A scalar matches exactly; a list matches any of its values;
# a dict is a range ({"gte": 3, "lt": 10}; ISO-8601 strings make it a datetime range) or an
# existence test ({"exists": True}: a non-null, non-empty value; missing, null and [] are absent).
# Conditions on different keys must all hold. Parsed by `ragline.retrieval.filters`.
Filters = dict[str, Any]


def document_text(payload: dict[str, Any]) -> str | None:
    """The text a point's BM25 vector is computed from (None: nothing to index): the same
    header and text its dense vector was embedded from."""
    text = payload.get(TEXT_FIELD)
    if not isinstance(text, str) or not text.strip():
        return None
    context = payload.get(CONTEXT_FIELD)
    return indexed_text(context if isinstance(context, str) else None, text)


class StoredPoint(BaseModel):
    """A point as written to the store: a UUID string id, the dense vector, its payload and,
    in a collection that holds one, its `SECOND_VECTOR`."""

    id: str
    vector: list[float]
    payload: dict[str, Any] = Field(default_factory=dict)
    second: list[float] | None = None


class ScoredPoint(BaseModel):
    id: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)
    # The dense vector, only when the search asked for it (MMR needs it, nothing else does).
    vector: list[float] | None = None


class VectorStore(ABC):
    """One collection of chunk points: a named dense vector (cosine distance) and a named
    sparse BM25 vector the store computes from the payload's `TEXT_FIELD`.

    `filters` everywhere follow the `Filters` format above, in every search mode.
    """

    @abstractmethod
    def ensure_collection(self, dim: int, second_dim: int | None = None, second_model: str | None = None) -> None:
        """Create the collection and payload indexes if missing, with a `SECOND_VECTOR` of
        `second_dim` made by `second_model` when given (the engine fixes a collection's
        vectors at creation: an existing collection keeps what it has, and the model is
        recorded beside it); fail clearly on a dense dim mismatch."""

    def has_collection(self) -> bool:
        """Whether the collection exists yet (the first write's `ensure_collection` creates it)."""
        return self._collection_exists()

    @property
    def second_dim(self) -> int | None:
        """The size of the collection's `SECOND_VECTOR`; None without one (or no collection)."""
        return self._second_dim if self._collection_exists() else None

    @property
    def second_model(self) -> str | None:
        """The model that made the collection's `SECOND_VECTOR`s, as recorded at creation;
        None without them, or for a collection created before the model was recorded."""
        return self._second_model if self.second_dim is not None else None

    @abstractmethod
    def second_vectors(self, point_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored `SECOND_VECTOR` of these points by id; points without one are absent."""

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or overwrite points by id (idempotent for deterministic ids). Dense vector
        as given; BM25 from the payload text (a collection without the sparse vector gets
        dense only, so older collections stay writable)."""
        dim = self._collection_dim()
        for point in points:
            if len(point.vector) != dim:
                raise ValueError(
                    f"Vector store {self._name}: point {point.id} has a {len(point.vector)}-dim vector, "
                    f"the collection holds {dim}-dim vectors"
                )
            if point.second is not None and len(point.second) != (self._second_dim or 0):
                raise ValueError(
                    f"Vector store {self._name}: point {point.id} has a {len(point.second)}-dim second-stage "
                    f"vector, the collection holds {self._second_dim or 'no'} second-stage vectors"
                )
        sparse: list[Any] = [None] * len(points)
        if self._has_sparse:
            sparse = self._bm25.encode([document_text(p.payload) for p in points], self._save_avg_len)
        for batch in batches(list(zip(points, sparse)), self.upsert_batch_size):
            self._write(batch)

    @abstractmethod
    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""

    @abstractmethod
    def set_payload(self, point_ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Set these payload keys on existing points, vectors untouched (a permission change
        costs no embedding); unknown ids are ignored."""

    def search(
        self,
        vector: Sequence[float] | None,
        top_k: int,
        filters: Filters | None = None,
        *,
        text: str | None = None,
        mode: SearchMode = "dense",
        candidates: int | None = None,
        with_vectors: bool = False,
        readers: Collection[str] | None = None,
    ) -> list[ScoredPoint]:
        """Best points first. `dense`: cosine on `vector`; `sparse`: BM25 on `text`;
        `hybrid`: both as prefetches (`candidates` each) fused with RRF inside Qdrant.
        `with_vectors` fills each point's dense `vector`. `readers` (a caller's effective
        principals) restricts every part of the query, each hybrid prefetch included, to
        points whose readers include one of them; None: unrestricted.

        The checks every store makes the same way live here, so the stores only query."""
        exists = self._collection_exists()
        check_search_args(vector, text, mode, candidates)
        native_filter = self._native_filter(filters, readers)  # bad filters fail even on an empty store
        if not exists or top_k <= 0:
            return []
        if mode != "dense" and not self._has_sparse:
            raise ValueError(
                f"Vector store {self._name}: it has no sparse vector named {self.sparse_vector_name!r}, "
                f"which {mode} search needs; it supports dense search only (re-ingest into a new store "
                "for BM25, or configure the sparse vector name it uses)"
            )
        dense = [float(x) for x in vector] if mode != "sparse" and vector is not None else None
        # The engine orders equal scores (RRF ties are common) differently after a reopen; a few
        # extra points and a sort by (score, id) make every search deterministic, the cut included.
        points = self._query(
            dense, top_k + TIE_MARGIN, native_filter, text=text, mode=mode,
            limit=prefetch_limit(top_k, candidates), with_vectors=with_vectors,
        )
        points.sort(key=lambda point: (-point.score, point.id))
        return points[:top_k]

    @abstractmethod
    def count(self, filters: Filters | None = None) -> int:
        """Exact number of points (matching `filters`)."""

    def is_empty(self) -> bool:
        """No points at all; checked before every query, so stores make it cheap."""
        return self.count() == 0

    def iter_points(self, filters: Filters | None = None) -> Iterator[ScoredPoint]:
        """Every point (matching `filters`) with its payload; score is 0. Order unspecified."""
        if not self._collection_exists():
            return
        native_filter = self._native_filter(filters)
        offset = None
        while True:
            points, offset = self._scroll(native_filter, offset)
            yield from points
            if offset is None:
                return

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

    # -- what each store implements for the shared `search` and `iter_points` --

    # Set by each store once it knows the collection: whether it has the BM25 sparse vector,
    # and its second-stage vector's size (None: it has none).
    _has_sparse: bool
    _second_dim: int | None = None
    _second_model: str | None = None
    sparse_vector_name: str
    _bm25: Bm25Documents
    upsert_batch_size = 256

    @abstractmethod
    def _collection_dim(self) -> int:
        """The collection's dense dimension; raises if it does not exist or the store is closed."""

    @abstractmethod
    def _save_avg_len(self, avg_len: float) -> None:
        """Persist the corpus' mean document length in tokens (BM25's document weighting)."""

    @abstractmethod
    def _write(self, batch: Sequence[tuple[StoredPoint, Any]]) -> None:
        """Write one batch of (point, BM25 sparse vector or None)."""

    @property
    @abstractmethod
    def _name(self) -> str:
        """The store's location as error messages name it."""

    @abstractmethod
    def _collection_exists(self) -> bool:
        """Whether the collection exists (raises if the store is closed)."""

    @abstractmethod
    def _native_filter(self, filters: Filters | None, readers: Collection[str] | None = None) -> Any:
        """`filters` (and the `readers` restriction) in the engine's own filter type (None
        for no filter), by `ragline.retrieval.filters.engine_filter`."""

    @abstractmethod
    def _scroll(self, native_filter: Any, offset: Any) -> tuple[list[ScoredPoint], Any]:
        """One page of points from `offset` (None: the start) and the next page's offset
        (None after the last page); raises if the store was closed meanwhile."""

    @abstractmethod
    def _query(
        self, dense: list[float] | None, top_k: int, native_filter: Any, *,
        text: str | None, mode: SearchMode, limit: int, with_vectors: bool,
    ) -> list[ScoredPoint]:
        """The engine query for checked arguments; `limit` is each hybrid prefetch's depth."""


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


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most `size` items (write requests stay bounded)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
