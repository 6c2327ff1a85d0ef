"""`VectorStore` on qdrant-edge: the real Qdrant engine in-process, one shard per directory.

No server to run or keep in sync: the shard directory is the whole database. The engine has
no collection layer and no background optimizer, so this module keeps the collection-level
bits itself (the dim check, payload indexes) and everything stays in the appendable segments.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from ragline.retrieval.store import INDEXED_KEYWORD_FIELDS, ScoredPoint, StoredPoint, VectorStore

# Written by the engine on create and on every load; the shard exposes no config accessor.
_CONFIG_FILE = "edge_config.json"


def _to_filter(filters: dict[str, Any] | None) -> qe.Filter | None:
    if not filters:
        return None
    conditions = []
    for key, value in filters.items():
        any_of = isinstance(value, (list, tuple, set, frozenset))
        if any(isinstance(v, bool) for v in (value if any_of else [value])):
            # qdrant-edge 0.9 turns MatchValue(True) into the integer 1, which never matches a
            # boolean payload: refuse instead of silently returning nothing.
            raise ValueError(f"filter on {key!r}: boolean values are not supported by the edge store")
        match = qe.MatchAny(list(value)) if any_of else qe.MatchValue(value)
        conditions.append(qe.FieldCondition(key, match=match))
    return qe.Filter(must=conditions)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EdgeStore(VectorStore):
    """One embedded shard at `path`; created lazily by `ensure_collection`.

    The engine locks the directory (one open shard at a time, even within a process), so open
    it once and `close()` it; the WAL makes writes durable before `close()` flushes.
    """

    upsert_batch_size = 256
    scroll_page_size = 256

    def __init__(self, path: str | Path, dense_vector_name: str = "dense") -> None:
        self.path = Path(path)
        self.dense_vector_name = dense_vector_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._shard: qe.EdgeShard | None = None
        self._dim: int | None = None
        self._closed = False
        if self._has_shard_data():
            self._shard = self._load()
            try:
                self._dim = self._read_dim()
            except Exception:
                self._shard.close()
                raise

    def __repr__(self) -> str:
        return f"EdgeStore(path={str(self.path)!r}, dim={self._dim})"

    # -- lifecycle -----------------------------------------------------------------------

    def _has_shard_data(self) -> bool:
        """A directory without config or segments is an uncreated collection, not an error."""
        segments = self.path / "segments"
        return (self.path / _CONFIG_FILE).is_file() or (segments.is_dir() and any(segments.iterdir()))

    def _load(self) -> qe.EdgeShard:
        try:
            return qe.EdgeShard.load(str(self.path))
        except Exception as exc:
            if "WouldBlock" in str(exc):  # the engine's WAL lock; its own message is cryptic
                raise RuntimeError(
                    f"Vector store {self.path} is already open (in another process or EdgeStore); "
                    "the embedded engine allows one at a time"
                ) from exc
            raise

    def _read_dim(self) -> int:
        config = json.loads((self.path / _CONFIG_FILE).read_text())
        vectors = config.get("vectors") or {}
        params = vectors.get(self.dense_vector_name)
        if params is None:
            raise ValueError(
                f"Vector store {self.path}: shard has no dense vector named "
                f"{self.dense_vector_name!r} (it has: {sorted(vectors) or 'none'})"
            )
        if params.get("distance") != "Cosine":
            raise ValueError(
                f"Vector store {self.path}: vector {self.dense_vector_name!r} uses "
                f"{params.get('distance')} distance, expected Cosine"
            )
        return int(params["size"])

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Vector store {self.path} is closed")

    def _require_shard(self) -> qe.EdgeShard:
        self._check_open()
        if self._shard is None:
            raise RuntimeError(
                f"Vector store {self.path}: collection does not exist; call ensure_collection(dim) first"
            )
        return self._shard

    def ensure_collection(self, dim: int) -> None:
        self._check_open()
        if dim <= 0:
            raise ValueError(f"Vector store {self.path}: dim must be positive, got {dim}")
        if self._shard is None:
            vectors = {self.dense_vector_name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
            self._shard = qe.EdgeShard.create(str(self.path), qe.EdgeConfig(vectors=vectors))
            self._dim = dim
        elif self._dim != dim:
            raise ValueError(
                f"Vector store {self.path} holds {self._dim}-dim vectors but {dim} was requested; "
                "use the embedding model the store was built with, or a new store path"
            )
        indexed = self._shard.info().payload_schema
        for field in INDEXED_KEYWORD_FIELDS:
            if field not in indexed:
                self._shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.flush()
            shard.close()

    # -- writes --------------------------------------------------------------------------

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        shard = self._require_shard()
        for point in points:
            if len(point.vector) != self._dim:
                raise ValueError(
                    f"Vector store {self.path}: point {point.id} has a {len(point.vector)}-dim vector, "
                    f"the collection holds {self._dim}-dim vectors"
                )
        for batch in _chunks(points, self.upsert_batch_size):
            edge_points = [
                qe.Point(p.id, {self.dense_vector_name: p.vector}, p.payload) for p in batch
            ]
            shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def delete(self, point_ids: Sequence[str]) -> None:
        self._check_open()
        if self._shard is None:
            return
        for batch in _chunks(list(point_ids), self.upsert_batch_size):
            self._shard.update(qe.UpdateOperation.delete_points(list(batch)))

    # -- reads ---------------------------------------------------------------------------

    def search(
        self, vector: Sequence[float], top_k: int, filters: dict[str, Any] | None = None
    ) -> list[ScoredPoint]:
        self._check_open()
        if self._shard is None or top_k <= 0:
            return []
        request = qe.QueryRequest(
            limit=top_k,
            query=qe.Query.Nearest([float(x) for x in vector], using=self.dense_vector_name),
            filter=_to_filter(filters),
            with_payload=True,
            with_vector=False,
        )
        return [
            ScoredPoint(id=str(hit.id), score=hit.score, payload=hit.payload or {})
            for hit in self._shard.query(request)
        ]

    def count(self, filters: dict[str, Any] | None = None) -> int:
        self._check_open()
        if self._shard is None:
            return 0
        return self._shard.count(qe.CountRequest(exact=True, filter=_to_filter(filters)))

    def iter_points(self, filters: dict[str, Any] | None = None) -> Iterator[ScoredPoint]:
        self._check_open()
        if self._shard is None:
            return
        edge_filter = _to_filter(filters)
        offset = None
        while True:
            self._check_open()
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=self.scroll_page_size,
                    filter=edge_filter,
                    with_payload=True,
                    with_vector=False,
                )
            )
            for record in records:
                yield ScoredPoint(id=str(record.id), score=0.0, payload=record.payload or {})
            if offset is None:
                return
