"""`Rag`: the library's front door, wiring store, ledger, embedder and LLM from one config."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from ragline.answering import Answering
from ragline.config import RaglineConfig, load_config, secret_from_env
from ragline.connectors.base import Connector
from ragline.models import Hit, IngestError, IngestReport
from ragline.pipelines.providers.base import LLMProvider
from ragline.retrieval.embeddings import Embedder
from ragline.retrieval.rerank import Reranker
from ragline.retrieval.store import Filters, ScoredPoint, SearchMode, VectorStore
from ragline.tracing import record_hits

EDGE_SHARD_DIR = "qdrant"
LEDGER_FILE = "ledger.sqlite"
EMBEDDING_CACHE_FILE = "embeddings.sqlite"


def open(  # noqa: A001 - the public entry point is `ragline.open`
    path: str | Path | None = None,
    *,
    config: RaglineConfig | None = None,
    config_file: str | Path | None = None,
    embedder: Embedder | None = None,
    provider: LLMProvider | None = None,
    **overrides: Any,
) -> Rag:
    """Open (or create) a ragline store. `path` is the store directory (default `.ragline`).

    `embedder` / `provider` replace the configured embedder and LLM (e.g. to share loaded
    models); `overrides` are config sections as dicts, e.g. `llm={"max_tokens": 64}`.
    """
    if config is None:
        if path is not None:
            overrides["store"] = {**overrides.get("store", {}), "path": str(path)}
        config = load_config(config_file, **overrides)
    elif path is not None:
        config = config.model_copy(update={"store": config.store.model_copy(update={"path": str(path)})})
    return Rag(config, embedder=embedder, provider=provider)


def _hit(point: ScoredPoint) -> Hit:
    payload = dict(point.payload)
    return Hit(
        document_id=payload.pop("document_id"),
        chunk_id=payload.pop("chunk_id", point.id),
        score=point.score,
        text=payload.pop("text", ""),
        metadata=payload,
    )


class Rag(Answering):
    def __init__(
        self, config: RaglineConfig, *, embedder: Embedder | None = None, provider: LLMProvider | None = None
    ):
        self.config = config
        self.path = Path(config.store.path)
        # Injected components are the caller's to close; cached_property lets them preempt the defaults.
        self._injected_provider = provider
        self._injected_embedder = embedder
        self._retrieve_lock = threading.Lock()
        if embedder is not None:
            self.__dict__["embedder"] = embedder

    # --- components, built on first use so `ragline retrieve` never loads the LLM ---

    @cached_property
    def store(self) -> VectorStore:
        store = self.config.store
        if store.kind == "server":
            from ragline.retrieval.server_store import ServerStore

            if not store.url:
                raise ValueError("store.url is required when store.kind = 'server'")
            location = store.url if store.url == ":memory:" else None
            return ServerStore(
                store.collection,
                url=None if location else store.url,
                location=location,
                api_key=secret_from_env(store.api_key_env),
                dense_vector_name=store.dense_vector_name,
                sparse_vector_name=store.sparse_vector_name,
                bm25_avg_len=store.bm25_avg_len,
            )
        from ragline.retrieval.edge_store import EdgeStore

        return EdgeStore(
            self.path / EDGE_SHARD_DIR,
            dense_vector_name=store.dense_vector_name,
            sparse_vector_name=store.sparse_vector_name,
            bm25_avg_len=store.bm25_avg_len,
            hnsw_threshold=store.hnsw_threshold,
        )

    @cached_property
    def embedder(self) -> Embedder:
        settings = self.config.embedding
        if settings.provider == "openai":
            from ragline.retrieval.http_embeddings import HttpEmbedder

            return HttpEmbedder(  # type: ignore[return-value]  (the same interface)
                settings.model, base_url=settings.base_url, timeout=settings.timeout, batch_size=settings.batch_size,
                api_key=secret_from_env(settings.api_key_env, settings.api_key_file),
            )  # fmt: skip
        return Embedder(settings)

    @cached_property
    def ledger(self):
        from ragline.ingest.ledger import Ledger

        return Ledger(self.path / LEDGER_FILE)

    @cached_property
    def _ingestor(self):
        from ragline.ingest.chunking import Chunker
        from ragline.ingest.embedding_cache import EmbeddingCache
        from ragline.ingest.pipeline import Ingestor

        return Ingestor(
            self.store, self.ledger, self.embedder, Chunker(self.config.chunking),
            EmbeddingCache(self.path / EMBEDDING_CACHE_FILE), self.config.ingest,
        )

    # --- public API ---

    def _connectors(self, sources) -> Iterator[Connector | IngestError]:
        """Connectors for what `ingest` was given; a source that cannot even be set up
        becomes an error entry, so the other sources still run."""
        from ragline.connectors.base import ConnectorError
        from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector
        from ragline.connectors.registry import make_connector

        if sources is None:
            if not self.config.sources:
                raise ValueError("nothing to ingest: give paths, or configure [[sources]] in ragline.toml")
            for entry in self.config.sources:
                try:
                    yield make_connector(entry.kind, entry.connector_settings())
                except (ValueError, ConnectorError) as exc:
                    yield IngestError(document=f"[[sources]] kind={entry.kind}", error=str(exc))
            return
        if isinstance(sources, (str, Path, Connector)):
            sources = [sources]
        for source in sources:
            if isinstance(source, Connector):
                yield source
                continue
            try:
                yield FilesystemConnector(FilesystemConfig(root=Path(source)))
            except ConnectorError as exc:
                yield IngestError(document=str(source), error=str(exc))

    def ingest(
        self,
        sources: str | Path | Connector | Iterable[str | Path | Connector] | None = None,
        *,
        show_progress: bool = False,
        allow_mass_delete: bool | None = None,
    ) -> IngestReport:
        """Ingest files, folders or connectors (default: the configured `[[sources]]`).

        Re-running only processes what changed, and removes what disappeared (within the
        mass-delete guard)."""
        total = IngestReport()
        for source in self._connectors(sources):
            if isinstance(source, IngestError):
                total.failed += 1
                total.errors.append(source)
                continue
            total.merge(
                self._ingestor.run(source, show_progress=show_progress, allow_mass_delete=allow_mass_delete)
            )
        if total.chunks_embedded:
            self.optimize()
        return total

    def optimize(self) -> None:
        """Build search indexes where the engine needs an explicit call (the embedded store
        switches from exact search to HNSW for segments above `store.hnsw_threshold`)."""
        self.store.optimize()

    def sources(self):
        """Every ingested source with its document/chunk counts and last run (`SourceSummary`)."""
        return self.ledger.sources()

    @cached_property
    def reranker(self) -> Reranker | None:
        from ragline.retrieval.rerank import (
            OnnxCrossEncoder,
            SentenceTransformersCrossEncoder,
        )

        settings = self.config.retrieval
        if settings.rerank == "onnx":
            return OnnxCrossEncoder(settings.rerank_model, batch_size=settings.rerank_batch_size)
        if settings.rerank == "sentence-transformers":
            if not settings.rerank_model:
                raise ValueError("retrieval.rerank_model is required when retrieval.rerank = 'sentence-transformers'")
            return SentenceTransformersCrossEncoder(settings.rerank_model, batch_size=settings.rerank_batch_size)
        return None

    def retrieve(
        self,
        question: str,
        top_k: int = 10,
        filters: Filters | None = None,
        *,
        mode: SearchMode | None = None,
        rerank: bool | None = None,
        mmr: bool | None = None,
    ) -> list[Hit]:
        """The `top_k` chunks best matching `question`.

        First stage: `mode` (default `retrieval.mode`: hybrid dense + BM25, fused by RRF in
        Qdrant); then, unless `rerank=False` or no reranker is configured, the cross-encoder
        re-scores the best `retrieval.rerank_top_n` candidates; then, with `mmr` (default
        `retrieval.mmr`), those candidates are re-ordered by maximal marginal relevance.
        """
        if not question.strip():
            raise ValueError("question is empty")
        if self.store.is_empty():
            return []
        settings = self.config.retrieval
        mode = mode or settings.mode
        mmr = settings.mmr if mmr is None else mmr
        reranker = self.reranker if rerank is not False else None
        if rerank and reranker is None:
            raise ValueError("rerank requested but retrieval.rerank = 'none'")
        depth = max(top_k, settings.rerank_top_n) if reranker or mmr else top_k
        vector = self.embedder.embed_query(question) if mode != "sparse" else None
        points = self.store.search(
            vector, depth, filters, text=question, mode=mode, candidates=settings.candidates, with_vectors=mmr
        )
        hits = [_hit(p) for p in points]
        vectors = {hit.chunk_id: point.vector for hit, point in zip(hits, points)}
        if reranker:
            with self.tracing.span("rerank", {"ragline.rerank.top_n": settings.rerank_top_n}) as span:
                hits = reranker.rerank(question, hits, top_n=settings.rerank_top_n, fusion=settings.rerank_fusion == "rrf")
                record_hits(span, hits[:top_k], prefix="ragline.rerank")
        if mmr:
            from ragline.retrieval.mmr import diversify

            # Only the head shares one score scale (reranked or not); the tail keeps its order.
            head, tail = hits[: settings.rerank_top_n], hits[settings.rerank_top_n :]
            hits = diversify(head, [h.score for h in head], [vectors[h.chunk_id] for h in head],
                             settings.mmr_lambda) + tail
        return hits[:top_k]

    def close(self) -> None:
        store = self.__dict__.pop("store", None)
        if store is not None:
            store.close()
        self._close_models()
        embedder = self.__dict__.pop("embedder", None)
        if embedder is not None and self._injected_embedder is None and hasattr(embedder, "close"):
            embedder.close()  # a server embedder's connections
        ingestor = self.__dict__.pop("_ingestor", None)
        if ingestor is not None:
            ingestor.cache.close()
        ledger = self.__dict__.pop("ledger", None)
        if ledger is not None:
            ledger.close()

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
