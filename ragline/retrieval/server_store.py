"""`VectorStore` on a Qdrant server through qdrant-client.

For deployments that already run Qdrant (shared by several processes or machines). The
client's local `:memory:` mode speaks the same API, which is what the contract tests use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from ragline.retrieval.store import INDEXED_KEYWORD_FIELDS, ScoredPoint, StoredPoint, VectorStore


def _to_filter(filters: dict[str, Any] | None) -> models.Filter | None:
    if not filters:
        return None
    conditions: list[models.Condition] = []
    for key, value in filters.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            match: models.Match = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        conditions.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=conditions)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ServerStore(VectorStore):
    """One collection on a Qdrant server (or in qdrant-client's local mode).

    The api_key goes to the client only: it is not kept on the store, logged or shown in repr.
    """

    upsert_batch_size = 256
    scroll_page_size = 256

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        dense_vector_name: str = "dense",
        timeout: float = 30,
    ) -> None:
        self.collection = collection
        self.dense_vector_name = dense_vector_name
        self._where = location or url or "http://localhost:6333"
        self._client = QdrantClient(url=url, location=location, api_key=api_key, timeout=timeout)
        self._dim: int | None = None
        self._indexed = False
        self._closed = False

    def __repr__(self) -> str:
        return f"ServerStore(collection={self.collection!r}, at={self._where!r}, dim={self._dim})"

    @property
    def _name(self) -> str:
        return f"{self.collection!r} at {self._where}"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Vector store {self._name} is closed")

    def _existing_dim(self) -> int | None:
        """The collection's dense dim, or None if it does not exist yet (cached once known)."""
        self._check_open()
        if self._dim is None and self._client.collection_exists(self.collection):
            vectors = self._client.get_collection(self.collection).config.params.vectors
            params = vectors.get(self.dense_vector_name) if isinstance(vectors, dict) else None
            if params is None:
                raise ValueError(
                    f"Vector store {self._name}: collection has no dense vector named "
                    f"{self.dense_vector_name!r}"
                )
            if params.distance != models.Distance.COSINE:
                raise ValueError(
                    f"Vector store {self._name}: vector {self.dense_vector_name!r} uses "
                    f"{params.distance} distance, expected Cosine"
                )
            self._dim = params.size
        return self._dim

    def ensure_collection(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"Vector store {self._name}: dim must be positive, got {dim}")
        existing = self._existing_dim()
        if existing is None:
            self._client.create_collection(
                self.collection,
                vectors_config={
                    self.dense_vector_name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                },
            )
            self._dim = dim
        elif existing != dim:
            raise ValueError(
                f"Vector store {self._name} holds {existing}-dim vectors but {dim} was requested; "
                "use the embedding model the store was built with, or a new collection"
            )
        if not self._indexed:
            indexed = self._client.get_collection(self.collection).payload_schema
            for field in INDEXED_KEYWORD_FIELDS:
                if field not in indexed:
                    self._client.create_payload_index(
                        self.collection, field, field_schema=models.PayloadSchemaType.KEYWORD
                    )
            self._indexed = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        dim = self._existing_dim()
        if dim is None:
            raise RuntimeError(
                f"Vector store {self._name}: collection does not exist; call ensure_collection(dim) first"
            )
        for point in points:
            if len(point.vector) != dim:
                raise ValueError(
                    f"Vector store {self._name}: point {point.id} has a {len(point.vector)}-dim vector, "
                    f"the collection holds {dim}-dim vectors"
                )
        for batch in _chunks(points, self.upsert_batch_size):
            self._client.upsert(
                self.collection,
                points=[
                    models.PointStruct(id=p.id, vector={self.dense_vector_name: p.vector}, payload=p.payload)
                    for p in batch
                ],
                wait=True,
            )

    def delete(self, point_ids: Sequence[str]) -> None:
        if self._existing_dim() is None:
            return
        for batch in _chunks(list(point_ids), self.upsert_batch_size):
            self._client.delete(
                self.collection, points_selector=models.PointIdsList(points=list(batch)), wait=True
            )

    def search(
        self, vector: Sequence[float], top_k: int, filters: dict[str, Any] | None = None
    ) -> list[ScoredPoint]:
        if self._existing_dim() is None or top_k <= 0:
            return []
        response = self._client.query_points(
            self.collection,
            query=[float(x) for x in vector],
            using=self.dense_vector_name,
            query_filter=_to_filter(filters),
            limit=top_k,
            with_payload=True,
        )
        return [ScoredPoint(id=str(p.id), score=p.score, payload=p.payload or {}) for p in response.points]

    def count(self, filters: dict[str, Any] | None = None) -> int:
        if self._existing_dim() is None:
            return 0
        return self._client.count(self.collection, count_filter=_to_filter(filters), exact=True).count

    def iter_points(self, filters: dict[str, Any] | None = None) -> Iterator[ScoredPoint]:
        if self._existing_dim() is None:
            return
        scroll_filter = _to_filter(filters)
        offset = None
        while True:
            self._check_open()
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=scroll_filter,
                limit=self.scroll_page_size,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            for record in records:
                yield ScoredPoint(id=str(record.id), score=0.0, payload=record.payload or {})
            if offset is None:
                return
