"""`VectorStore` on a Qdrant server through qdrant-client.

For deployments that already run Qdrant (shared by several processes or machines). The
client's local `:memory:` mode speaks the same API, which is what the contract tests use.
The BM25 avg_len and the second-stage model live in the collection's metadata (Qdrant
server 1.16+), next to the data they describe.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from ragline.retrieval import filters as f
from ragline.retrieval.sparse import Bm25Documents, encode_query
from ragline.retrieval.store import (
    INDEXED_KEYWORD_FIELDS,
    SECOND_VECTOR,
    Filters,
    ScoredPoint,
    SearchMode,
    StoredPoint,
    VectorStore,
    batches,
)

_AVG_LEN_KEY = "ragline_bm25_avg_len"
_SECOND_MODEL_KEY = "ragline_second_model"


def _condition(cond: f.Condition) -> models.Condition:
    match cond:
        case f.Match(key, value):
            return models.FieldCondition(key=key, match=models.MatchValue(value=value))
        case f.MatchAny(key, values):
            return models.FieldCondition(key=key, match=models.MatchAny(any=values))
        case f.NumberRange(key, bounds):
            return models.FieldCondition(key=key, range=models.Range(**bounds))
        case f.DatetimeRange(key, bounds):
            return models.FieldCondition(key=key, range=models.DatetimeRange(**bounds))
        case f.Exists(key, _):
            return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
    raise TypeError(cond)  # pragma: no cover


def _sparse(vector: qe.SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


class ServerStore(VectorStore):
    """One collection on a Qdrant server (or in qdrant-client's local mode).

    The api_key goes to the client only: it is not kept on the store, logged or shown in repr.
    """

    scroll_page_size = 256

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        dense_vector_name: str = "dense",
        sparse_vector_name: str = "bm25",
        bm25_avg_len: float | None = None,
        timeout: float = 30,
        drop_on_close: bool = False,
    ) -> None:
        self.collection = collection
        self._drop_on_close = drop_on_close  # a scratch collection (the access self-test)
        self.dense_vector_name = dense_vector_name
        self.sparse_vector_name = sparse_vector_name
        self._where = location or url or "http://localhost:6333"
        self._bm25_avg_len = bm25_avg_len
        self._bm25 = Bm25Documents(bm25_avg_len, None, self._name)
        self._client = QdrantClient(url=url, location=location, api_key=api_key, timeout=timeout)
        self._dim: int | None = None
        self._has_sparse = False
        self._indexed = False
        self._closed = False

    def __repr__(self) -> str:
        return f"ServerStore(collection={self.collection!r}, at={self._where!r}, dim={self._dim})"

    @property
    def bm25_avg_len(self) -> float | None:
        """The average document length BM25 encodes with; None until the first text arrives."""
        self._existing_dim()
        return self._bm25.avg_len

    @property
    def _name(self) -> str:
        return f"{self.collection!r} at {self._where}"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Vector store {self._name} is closed")

    def _existing_dim(self) -> int | None:
        """The collection's dense dim, or None if it does not exist yet (cached once known,
        with the sparse vector's presence and the stored avg_len)."""
        self._check_open()
        if self._dim is None and self._client.collection_exists(self.collection):
            config = self._client.get_collection(self.collection).config
            vectors = config.params.vectors
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
            stored = (config.metadata or {}).get(_AVG_LEN_KEY)
            self._bm25 = Bm25Documents(self._bm25_avg_len, stored, self._name)
            self._has_sparse = self.sparse_vector_name in (config.params.sparse_vectors or {})
            second = vectors.get(SECOND_VECTOR)
            self._second_dim = second.size if second else None
            self._second_model = (config.metadata or {}).get(_SECOND_MODEL_KEY)
            self._dim = params.size
        return self._dim

    def ensure_collection(self, dim: int, second_dim: int | None = None, second_model: str | None = None) -> None:
        if dim <= 0:
            raise ValueError(f"Vector store {self._name}: dim must be positive, got {dim}")
        existing = self._existing_dim()
        if existing is None:
            vectors = {self.dense_vector_name: models.VectorParams(size=dim, distance=models.Distance.COSINE)}
            second_model = second_model if second_dim else None
            if second_dim:
                vectors[SECOND_VECTOR] = models.VectorParams(size=second_dim, distance=models.Distance.COSINE)
            self._client.create_collection(
                self.collection,
                vectors_config=vectors,
                sparse_vectors_config={
                    self.sparse_vector_name: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                metadata={_SECOND_MODEL_KEY: second_model} if second_model else None,
            )
            self._dim, self._second_dim, self._second_model = dim, second_dim or None, second_model
            self._has_sparse = True
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
            try:
                if self._drop_on_close and self._client.collection_exists(self.collection):
                    self._client.delete_collection(self.collection)
            finally:
                self._client.close()

    def _save_avg_len(self, avg_len: float) -> None:
        self._client.update_collection(self.collection, metadata={_AVG_LEN_KEY: avg_len})

    def _collection_dim(self) -> int:
        dim = self._existing_dim()
        if dim is None:
            raise RuntimeError(
                f"Vector store {self._name}: collection does not exist; call ensure_collection(dim) first"
            )
        return dim

    def _write(self, batch: Sequence[tuple[StoredPoint, qe.SparseVector | None]]) -> None:
        self._client.upsert(self.collection, points=[self._point(p, sv) for p, sv in batch], wait=True)

    def _point(self, point: StoredPoint, sparse: qe.SparseVector | None) -> models.PointStruct:
        vectors: dict[str, Any] = {self.dense_vector_name: point.vector}
        if sparse is not None:
            vectors[self.sparse_vector_name] = _sparse(sparse)
        if point.second is not None:
            vectors[SECOND_VECTOR] = point.second
        return models.PointStruct(id=point.id, vector=vectors, payload=point.payload)

    def second_vectors(self, point_ids: Sequence[str]) -> dict[str, list[float]]:
        if not point_ids or self._existing_dim() is None or self._second_dim is None:
            return {}
        records = self._client.retrieve(
            self.collection, list(point_ids), with_payload=False, with_vectors=[SECOND_VECTOR]
        )
        return {str(r.id): r.vector[SECOND_VECTOR] for r in records
                if isinstance(r.vector, dict) and SECOND_VECTOR in r.vector}  # fmt: skip

    def delete(self, point_ids: Sequence[str]) -> None:
        if self._existing_dim() is None:
            return
        for batch in batches(list(point_ids), self.upsert_batch_size):
            self._client.delete(
                self.collection, points_selector=models.PointIdsList(points=list(batch)), wait=True
            )

    def set_payload(self, point_ids: Sequence[str], payload: dict[str, Any]) -> None:
        if self._existing_dim() is None:
            return
        for batch in batches(list(point_ids), self.upsert_batch_size):
            found = [str(r.id) for r in self._client.retrieve(self.collection, list(batch), with_payload=False)]
            if found:  # a server refuses the whole request if one id is missing
                self._client.set_payload(self.collection, payload=payload, points=found, wait=True)

    def _collection_exists(self) -> bool:
        return self._existing_dim() is not None

    def _native_filter(self, filters: Filters | None, readers: Collection[str] | None = None) -> models.Filter | None:
        return f.engine_filter(filters, _condition, models.Filter, readers)

    def _query(
        self, dense: list[float] | None, top_k: int, native_filter: models.Filter | None, *,
        text: str | None, mode: SearchMode, limit: int, with_vectors: bool,
    ) -> list[ScoredPoint]:
        sparse = _sparse(encode_query(text)) if mode != "dense" else None
        vectors = [self.dense_vector_name] if with_vectors else False
        if mode == "hybrid":
            response = self._client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(query=dense, using=self.dense_vector_name, filter=native_filter, limit=limit),
                    models.Prefetch(query=sparse, using=self.sparse_vector_name, filter=native_filter, limit=limit),
                ],
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=top_k,
                with_payload=True,
                with_vectors=vectors,
            )
        else:
            response = self._client.query_points(
                self.collection,
                query=dense if mode == "dense" else sparse,
                using=self.dense_vector_name if mode == "dense" else self.sparse_vector_name,
                query_filter=native_filter,
                limit=top_k,
                with_payload=True,
                with_vectors=vectors,
            )
        return [
            ScoredPoint(id=str(p.id), score=p.score, payload=p.payload or {},
                        vector=p.vector[self.dense_vector_name] if with_vectors else None)
            for p in response.points
        ]

    def count(self, filters: Filters | None = None) -> int:
        if self._existing_dim() is None:
            return 0
        return self._client.count(self.collection, count_filter=self._native_filter(filters), exact=True).count

    def _scroll(self, native_filter: models.Filter | None, offset: Any) -> tuple[list[ScoredPoint], Any]:
        self._check_open()
        records, offset = self._client.scroll(
            self.collection, scroll_filter=native_filter, limit=self.scroll_page_size, offset=offset,
            with_payload=True, with_vectors=False,
        )
        return [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records], offset
