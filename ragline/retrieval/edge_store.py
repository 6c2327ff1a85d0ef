"""`VectorStore` on qdrant-edge: the real Qdrant engine in-process, one shard per directory.

No server to run or keep in sync: the shard directory is the whole database. The engine has
no collection layer, so this module keeps the collection-level bits itself (the dim check,
payload indexes, the BM25 avg_len in `ragline_store.json`), and no background optimizer, so
points stay in exact-search segments until `optimize()` builds HNSW.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from ragline.errors import StoreBusyError, StoreError
from ragline.retrieval import filters as f
from ragline.retrieval.fusion import RRF_K  # ServerStore's FusionQuery gets the same k from the server
from ragline.retrieval.ownership import StoreOwnership
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

# Written by the engine on create and on every load; the shard exposes no config accessor.
_REBUILD = (
    "If it is damaged, move the folder away and run `ragline ingest`: the ledger notices the lost index "
    "and re-processes every document from its source"
)
_CONFIG_FILE = "edge_config.json"
# Ours, next to the engine's files: what the engine has no place for (the BM25 avg_len,
# the second-stage model).
_STATE_FILE = "ragline_store.json"


def _condition(cond: f.Condition) -> Any:
    match cond:
        case f.Match(key, value):
            if isinstance(value, bool):
                # qdrant-edge 0.9 turns MatchValue(True) into the integer 1, which never matches a
                # boolean payload: refuse instead of silently returning nothing.
                raise ValueError(
                    f"filter on {key!r}: boolean values are not supported by the edge store "
                    "(qdrant-edge 0.9 matches them as integers); store the flag as a string or 0/1"
                )
            return qe.FieldCondition(key, match=qe.MatchValue(value))
        case f.MatchAny(key, values):
            return qe.FieldCondition(key, match=qe.MatchAny(values))
        case f.NumberRange(key, bounds):
            return qe.FieldCondition(key, range=qe.RangeFloat(**bounds))
        case f.DatetimeRange(key, bounds):
            iso = {op: v.isoformat() for op, v in bounds.items()}
            return qe.FieldCondition(key, range=qe.RangeDateTime(**iso))
        case f.Exists(key, _):
            return qe.IsEmptyCondition(key)
    raise TypeError(cond)  # pragma: no cover


class EdgeStore(VectorStore):
    """One embedded shard at `path`; created lazily by `ensure_collection`.

    The directory holding the shard is the store, and one EdgeStore at a time may open it,
    even within a process: its `owner.lock` (`ownership`) is taken before the engine is
    touched, waiting up to `open_timeout` seconds for another owner. Open it once and
    `close()` it; the WAL makes writes durable before `close()` flushes.
    `hnsw_threshold` is fixed when the shard is created: `optimize()` builds HNSW for segments
    holding about that many points (the engine measures KB of vector data: dense, or sparse
    if that is larger), smaller ones stay exact-search.
    """

    scroll_page_size = 256

    def __init__(
        self,
        path: str | Path,
        dense_vector_name: str = "dense",
        sparse_vector_name: str = "bm25",
        *,
        bm25_avg_len: float | None = None,
        hnsw_threshold: int = 20_000,
        open_timeout: float = 0.0,
    ) -> None:
        if hnsw_threshold <= 0:
            raise ValueError(f"hnsw_threshold must be positive, got {hnsw_threshold}")
        self.path = Path(path)
        self.dense_vector_name = dense_vector_name
        self.sparse_vector_name = sparse_vector_name
        self.hnsw_threshold = hnsw_threshold
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.ownership = StoreOwnership(self.path.parent, open_timeout=open_timeout)
        except OSError as exc:
            raise StoreError(self.path.parent, f"cannot be used as a store directory ({exc.strerror or exc})",
                             "Point store.path (or --store) at a directory this process can write.") from None
        self._shard: qe.EdgeShard | None = None
        self._dim: int | None = None
        self._has_sparse = False
        self._closed = False
        try:
            self._open_shard(bm25_avg_len)
        except BaseException:
            self.ownership.close()
            raise

    def __repr__(self) -> str:
        return f"EdgeStore(path={str(self.path)!r}, dim={self._dim})"

    @property
    def bm25_avg_len(self) -> float | None:
        """The average document length BM25 encodes with; None until the first text arrives."""
        return self._bm25.avg_len

    # -- lifecycle -----------------------------------------------------------------------

    def _has_shard_data(self) -> bool:
        """A directory without config or segments is an uncreated collection, not an error."""
        segments = self.path / "segments"
        return (self.path / _CONFIG_FILE).is_file() or (segments.is_dir() and any(segments.iterdir()))

    def _open_shard(self, bm25_avg_len: float | None) -> None:
        """Load what is already on disk (nothing, for a new store); the caller holds `owner.lock`."""
        has_data = self._has_shard_data()
        try:
            state = self._read_state() if has_data else {}
            self._bm25 = Bm25Documents(bm25_avg_len, state.get("bm25_avg_len"), str(self.path))
            self._second_model = state.get("second_model")
            if has_data:
                self._shard = self._load()
                try:
                    self._read_config()
                except Exception:
                    self._shard.close()
                    raise
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(self.path, f"the index cannot be read ({exc})", _REBUILD) from None

    def _load(self) -> qe.EdgeShard:
        try:
            return qe.EdgeShard.load(str(self.path))
        except Exception as exc:
            # The engine's WAL lock: reachable only when a process outside ragline holds the
            # shard (ragline openers hold `owner.lock` first), and by now the probe has
            # damaged that process's writer (see ragline/retrieval/ownership.py).
            if "WouldBlock" in str(exc):
                raise StoreBusyError(self.path.parent, None) from exc
            raise StoreError(self.path, f"the embedded engine cannot open the index ({exc})", _REBUILD) from None

    def _read_config(self) -> None:
        config = json.loads((self.path / _CONFIG_FILE).read_text())
        if config.get("wal_enabled") is False:  # no WAL: no engine lock, and writes lost on a crash
            raise StoreError(self.path, "the shard was created with its write-ahead log disabled (wal_enabled = false)",
                             "ragline relies on the WAL for crash safety: ingest into a new store directory")  # fmt: skip
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
        self._dim = int(params["size"])
        self._has_sparse = self.sparse_vector_name in (config.get("sparse_vectors") or {})
        second = vectors.get(SECOND_VECTOR)
        self._second_dim = int(second["size"]) if second else None

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / _STATE_FILE).read_text())
        except FileNotFoundError:
            return {}

    def _save_state(self, **changes: Any) -> None:
        """Atomic and synced: points written after it must never outlive it."""
        tmp = self.path / f"{_STATE_FILE}.tmp"
        with tmp.open("w") as fh:
            json.dump({**self._read_state(), **changes}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / _STATE_FILE)

    def _save_avg_len(self, avg_len: float) -> None:
        self._save_state(bm25_avg_len=avg_len)

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

    def ensure_collection(self, dim: int, second_dim: int | None = None, second_model: str | None = None) -> None:
        self._check_open()
        if dim <= 0:
            raise ValueError(f"Vector store {self.path}: dim must be positive, got {dim}")
        if self._shard is None:
            # The engine's indexing threshold is in KB of vector data; float32 dense vectors.
            indexing_kb = max(1, math.ceil(self.hnsw_threshold * dim * 4 / 1024))
            vectors = {self.dense_vector_name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
            if second_dim:
                vectors[SECOND_VECTOR] = qe.EdgeVectorParams(size=second_dim, distance=qe.Distance.Cosine)
            config = qe.EdgeConfig(
                vectors=vectors,
                sparse_vectors={self.sparse_vector_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                optimizers=qe.EdgeOptimizersConfig(indexing_threshold=indexing_kb),
                wal_enabled=True,  # the engine's default, pinned: durability before close() relies on it
            )
            (self.path / _STATE_FILE).unlink(missing_ok=True)  # a leftover of a deleted shard
            second_model = second_model if second_dim else None
            if second_model:  # before the shard: its vectors never exist without their model's name
                self.path.mkdir(parents=True, exist_ok=True)
                self._save_state(second_model=second_model)
            self._shard = qe.EdgeShard.create(str(self.path), config)
            self._dim, self._second_dim, self._second_model = dim, second_dim or None, second_model
            self._has_sparse = True
        elif self._dim != dim:
            raise ValueError(
                f"Vector store {self.path} holds {self._dim}-dim vectors but {dim} was requested; "
                "use the embedding model the store was built with, or a new store path"
            )
        indexed = self._shard.info().payload_schema
        for field in INDEXED_KEYWORD_FIELDS:
            if field not in indexed:
                self._shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))

    def optimize(self) -> None:
        """Blocks until the engine's optimizers are done (HNSW for segments over the threshold)."""
        self._check_open()
        if self._shard is not None:
            self._shard.optimize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._shard is not None:
                shard, self._shard = self._shard, None
                shard.flush()
                shard.close()
        finally:
            self.ownership.close()

    # -- writes --------------------------------------------------------------------------

    def _collection_dim(self) -> int:
        self._require_shard()
        return self._dim

    def _write(self, batch: Sequence[tuple[StoredPoint, qe.SparseVector | None]]) -> None:
        self._require_shard().update(qe.UpdateOperation.upsert_points([self._edge_point(p, sv) for p, sv in batch]))

    def _edge_point(self, point: StoredPoint, sparse: qe.SparseVector | None) -> qe.Point:
        vectors: dict[str, Any] = {self.dense_vector_name: point.vector}
        if sparse is not None:
            vectors[self.sparse_vector_name] = sparse
        if point.second is not None:
            vectors[SECOND_VECTOR] = point.second
        return qe.Point(point.id, vectors, point.payload)

    def second_vectors(self, point_ids: Sequence[str]) -> dict[str, list[float]]:
        if not point_ids or self._second_dim is None:
            return {}
        records = self._require_shard().retrieve(list(point_ids), False, [SECOND_VECTOR])
        return {str(r.id): r.vector[SECOND_VECTOR] for r in records if r.vector and SECOND_VECTOR in r.vector}

    def delete(self, point_ids: Sequence[str]) -> None:
        self._check_open()
        if self._shard is None:
            return
        for batch in batches(list(point_ids), self.upsert_batch_size):
            self._shard.update(qe.UpdateOperation.delete_points(list(batch)))

    def set_payload(self, point_ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._check_open()
        if self._shard is None:
            return
        for batch in batches(list(point_ids), self.upsert_batch_size):
            found = [str(r.id) for r in self._shard.retrieve(list(batch), False, False)]
            if found:  # the engine refuses the whole operation if one id is missing
                self._shard.update(qe.UpdateOperation.set_payload(found, payload))

    # -- reads ---------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return str(self.path)

    def _collection_exists(self) -> bool:
        self._check_open()
        return self._shard is not None

    def _native_filter(self, filters: Filters | None, readers: Collection[str] | None = None) -> qe.Filter | None:
        return f.engine_filter(filters, _condition, qe.Filter, readers)

    def _query(
        self, dense: list[float] | None, top_k: int, native_filter: qe.Filter | None, *,
        text: str | None, mode: SearchMode, limit: int, with_vectors: bool,
    ) -> list[ScoredPoint]:
        dense_query = qe.Query.Nearest(dense, using=self.dense_vector_name) if mode != "sparse" else None
        sparse_query = qe.Query.Nearest(encode_query(text), using=self.sparse_vector_name) if mode != "dense" else None
        vectors = [self.dense_vector_name] if with_vectors else False
        if mode == "hybrid":
            request = qe.QueryRequest(
                limit=top_k,
                prefetches=[qe.Prefetch(limit, query=q, filter=native_filter) for q in (dense_query, sparse_query)],
                query=qe.Fusion.Rrf(k=RRF_K),
                with_payload=True,
                with_vector=vectors,
            )
        else:
            request = qe.QueryRequest(
                limit=top_k,
                query=dense_query if mode == "dense" else sparse_query,
                filter=native_filter,
                with_payload=True,
                with_vector=vectors,
            )
        return [
            ScoredPoint(id=str(hit.id), score=hit.score, payload=hit.payload or {},
                        vector=hit.vector[self.dense_vector_name] if with_vectors else None)
            for hit in self._shard.query(request)
        ]

    def count(self, filters: Filters | None = None) -> int:
        self._check_open()
        if self._shard is None:
            return 0
        return self._shard.count(qe.CountRequest(exact=True, filter=self._native_filter(filters)))

    def is_empty(self) -> bool:
        """The shard's own point total (microseconds; an exact count scans, ~1 ms at 10k points)."""
        return not self._collection_exists() or self._shard.info().points_count == 0

    def _scroll(self, native_filter: qe.Filter | None, offset: Any) -> tuple[list[ScoredPoint], Any]:
        records, offset = self._require_shard().scroll(
            qe.ScrollRequest(
                offset=offset, limit=self.scroll_page_size, filter=native_filter, with_payload=True, with_vector=False
            )
        )
        return [ScoredPoint(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records], offset
