"""The composition root: every part of one store, built from one config in one place.

Each part is built on first use, so `ragline retrieve` never loads the LLM and `ragline
sources` never loads a model at all. Parts receive their dependencies here and never look
anything up themselves. `close` releases what was built here in an explicit order (model
stack, ingest caches, ledger, store, embedder, then tracing, which flushes last); parts
the caller injected are the caller's to close.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ragline.config import ConfigError, RaglineConfig, secret_from_env
from ragline.llm.base import LLMProvider
from ragline.retrieval.config import RetrievalConfig
from ragline.retrieval.embeddings import TextEmbedder

T = TypeVar("T")
log = logging.getLogger(__name__)

EDGE_SHARD_DIR = "qdrant"
LEDGER_FILE = "ledger.sqlite"
EMBEDDING_CACHE_FILE = "embeddings.sqlite"
ANSWER_CACHE_FILE = "answers.sqlite"

# Close order, and how each part is released.
_CLOSERS: dict[str, Callable[[Any], None]] = {
    "answers": lambda cache: cache and cache.close(),
    "llm": lambda stack: stack.close(),
    "ingestor": lambda ingestor: ingestor.cache.close(),
    "ray": lambda engine: engine.close(),
    "ledger": lambda ledger: ledger.close(),
    "shared_generation": lambda generation: generation and generation.close(),
    "store": lambda store: store.close(),
    "embedder": lambda embedder: embedder.close(),
    "tracing": lambda tracing: tracing.shutdown(),
}


class Components:
    def __init__(
        self, config: RaglineConfig, *, embedder: TextEmbedder | None = None, provider: LLMProvider | None = None
    ):
        self.config = config
        self.path = Path(config.store.path)
        self._provider = provider
        self._parts: dict[str, Any] = {}
        self._owned: set[str] = set()
        self._lock = threading.RLock()  # parallel pipeline branches may build parts at once
        if embedder is not None:
            self._parts["embedder"] = embedder

    def _part(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
                self._owned.add(name)
            return self._parts[name]

    @property
    def store(self):
        return self._part("store", self._build_store)

    @property
    def embedder(self) -> TextEmbedder:
        return self._part("embedder", self._build_embedder)

    @property
    def reranker(self):
        return self._part("reranker", self._build_reranker)

    @property
    def ledger(self):
        from ragline.ingest.ledger import Ledger

        def build():
            shared = self.shared_generation
            return Ledger(self.path / LEDGER_FILE, on_change=shared.bump if shared else None)

        return self._part("ledger", build)

    @property
    def store_identity(self) -> str:
        """Which index this is (`StoreConfig.identity`)."""
        return self.config.store.identity()

    @property
    def shared_generation(self):
        """With `[shared_state]`: the store's generation every replica bumps (None without)."""

        def build():
            from ragline.state.url import shared_state_url

            url = shared_state_url(self.config)
            if url is None:
                return None
            from ragline.state.generations import SharedGeneration

            return SharedGeneration(url, self.store_identity)

        return self._part("shared_generation", build)

    def generation(self) -> str:
        """What the answer cache keys on: this ledger's generation, and every replica's."""
        shared = self.shared_generation
        return f"{self.ledger.generation()}" + (f".{shared.value()}" if shared else "")

    @property
    def ingestor(self):
        return self._part("ingestor", self._build_ingestor)

    @property
    def access(self):
        """The `[access]` policy (`ragline.access.policy.AccessPolicy`)."""
        from ragline.access.policy import AccessPolicy

        return self._part("access", lambda: AccessPolicy(self.config.access))

    @property
    def retriever(self):
        from ragline.retrieval.retriever import Retriever

        def build() -> Retriever:
            self._self_test_access()
            self._warn_if_index_and_ledger_disagree()
            return Retriever(self.store, self.embedder, self.retrieval, reranker=self.reranker)

        return self._part("retriever", build)

    def _self_test_access(self) -> None:
        """With access control on, prove the store applies the readers filter before the
        first search (`ragline.access.canary`): on a scratch store of the same kind."""
        if not (self.config.access.enabled and self.config.access.self_test):
            return
        import tempfile

        from ragline.access.canary import check_filters_enforced

        if self.config.store.kind == "server":
            check_filters_enforced(lambda: self._build_store(scratch=True))
            return
        with tempfile.TemporaryDirectory(prefix="ragline-canary-") as scratch:
            check_filters_enforced(lambda: self._build_store(Path(scratch)))

    def _warn_if_index_and_ledger_disagree(self) -> None:
        """Queries over a store whose index lost points would quietly miss documents: say so
        once, when a store is first searched (two counts; ingest and `check` repair it)."""
        if not (self.path / LEDGER_FILE).is_file():
            return
        expected = sum(summary.chunks for summary in self.ledger.sources())
        found = self.store.count()
        if expected != found:
            log.warning(
                "store %s: the index holds %d points but the ledger expects %d; results may miss documents. "
                "Run `ragline check --repair`, then `ragline ingest`.", self.path, found, expected,
            )  # fmt: skip

    @property
    def tracing(self):
        from ragline.tracing.setup import setup_tracing

        return self._part("tracing", lambda: setup_tracing(self.config.tracing, self.path))

    @property
    def answers(self):
        """The answer cache (`ragline.pipelines.answer_cache.AnswerCache`), None when off."""
        from ragline.pipelines.answer_cache import AnswerCache

        return self._part("answers", lambda: AnswerCache.for_store(self.config, self.path, ANSWER_CACHE_FILE))

    def model_identity(self) -> str:
        """What answers beyond the `[llm]` / `[[models]]` settings: an injected provider."""
        from ragline.llm.wrappers.base import identity

        return identity(self._provider) if self._provider is not None else "configured"

    @property
    def llm(self):
        """The model stack (`ragline.llm.stack.LLMStack`)."""
        from ragline.llm.stack import LLMStack

        return self._part("llm", lambda: LLMStack(self.config, self.path, self.tracing, provider=self._provider))

    def _build_store(self, folder: Path | None = None, *, scratch: bool = False):
        """The configured store; `folder` (embedded) or `scratch` (server: a throwaway
        collection dropped on close) give one of the same kind for the access self-test."""
        store = self.config.store
        if store.kind == "server":
            from ragline.retrieval.server_store import ServerStore

            if not store.url:
                raise ValueError("store.url is required when store.kind = 'server'")
            location = store.url if store.url == ":memory:" else None
            return ServerStore(
                f"{store.collection}-ragline-canary-{os.getpid()}" if scratch else store.collection,
                url=None if location else store.url, location=location,
                api_key=secret_from_env(store.api_key_env), dense_vector_name=store.dense_vector_name,
                sparse_vector_name=store.sparse_vector_name, bm25_avg_len=store.bm25_avg_len, drop_on_close=scratch,
            )  # fmt: skip
        from ragline.retrieval.edge_store import EdgeStore

        return EdgeStore(
            (folder or self.path) / EDGE_SHARD_DIR, dense_vector_name=store.dense_vector_name,
            sparse_vector_name=store.sparse_vector_name, bm25_avg_len=store.bm25_avg_len,
            hnsw_threshold=store.hnsw_threshold, open_timeout=store.open_timeout,
        )  # fmt: skip

    def _build_embedder(self) -> TextEmbedder:
        settings = self.config.embedding
        if settings.provider == "openai":
            from ragline.retrieval.http_embeddings import HttpEmbedder

            return HttpEmbedder(
                settings.model, base_url=settings.base_url, timeout=settings.timeout, batch_size=settings.batch_size,
                api_key=secret_from_env(settings.api_key_env, settings.api_key_file),
            )  # fmt: skip
        from ragline.retrieval.embeddings import Embedder

        return Embedder(settings)

    @property
    def retrieval(self) -> RetrievalConfig:
        """`[retrieval]` as this store runs it, read by the retriever and the default pipeline
        alike (so a query cites what `retrieve` returns): `rerank = "auto"` is stored vectors,
        or for a store created without them the bundled cross-encoder it had before."""
        return self._part("retrieval", self._resolve_retrieval)

    def _resolve_retrieval(self) -> RetrievalConfig:
        settings = self.config.retrieval
        if settings.rerank != "auto":
            return settings
        if self.store.has_collection() and self.store.second_dim is None:
            log.info(
                "%r was created without second-stage vectors: reranking with the bundled cross-encoder. "
                "Ingest into a new store directory to store them (~25x faster per query).", self.store,
            )  # fmt: skip
            return settings.model_copy(update={"rerank": "onnx", "rerank_model": None})
        return settings.model_copy(update={"rerank": "vectors"})

    @property
    def second_stage(self):
        """The encoder of stored second-stage vectors: for a store that holds them (the model
        it recorded), or will (`retrieval.rerank = "vectors"`); None otherwise."""

        def build():
            settings = self.retrieval
            if settings.rerank != "vectors" and self.store.second_dim is None:
                return None
            return self._second_stage_encoder(settings)

        return self._part("second_stage", build)

    def _second_stage_encoder(self, settings: RetrievalConfig):
        from ragline.retrieval.second_stage import SecondStageEncoder

        instruction = settings.rerank_query_instruction
        configured = SecondStageEncoder(settings.rerank_model if settings.rerank == "vectors" else None,
                                        query_instruction=instruction)  # fmt: skip
        if self.store.second_dim is None:  # a new store: created with the configured model
            return configured
        stored = SecondStageEncoder.recorded(self.store.second_model, query_instruction=instruction)
        if settings.rerank == "vectors" and settings.rerank_model and configured.record != stored.record:
            raise ConfigError(
                f"{self.store!r} holds second-stage vectors made by {stored.record}, but retrieval.rerank_model is "
                f"{settings.rerank_model}: leave rerank_model unset (the store's model is used), or ingest into a "
                "new store directory to change the model"
            )
        return stored

    @property
    def cross_encoder(self):
        """What reads (sentence, passage) pairs for the eval's `source_support`, whose scale
        is a cross-encoder's logit: the configured cross-encoder, the bundled one when the
        second stage is stored vectors, None with no second stage."""

        def build():
            if self.retrieval.rerank != "vectors":
                return self.reranker
            from ragline.retrieval.rerank import OnnxCrossEncoder

            return OnnxCrossEncoder(batch_size=self.config.retrieval.rerank_batch_size)

        return self._part("cross_encoder", build)

    def _build_reranker(self):
        from ragline.retrieval.rerank import OnnxCrossEncoder, SentenceTransformersCrossEncoder

        settings = self.retrieval
        if settings.rerank == "vectors":
            from ragline.retrieval.second_stage import StoredVectorReranker

            return StoredVectorReranker(self.store, self.second_stage)
        if settings.rerank == "onnx":
            return OnnxCrossEncoder(settings.rerank_model, batch_size=settings.rerank_batch_size)
        if settings.rerank == "sentence-transformers":
            if not settings.rerank_model:
                raise ValueError("retrieval.rerank_model is required when retrieval.rerank = 'sentence-transformers'")
            return SentenceTransformersCrossEncoder(settings.rerank_model, batch_size=settings.rerank_batch_size)
        return None

    @property
    def ray(self):
        """With `ingest.engine = "ray"`: the cluster and its parse and embedding workers."""
        from ragline.ray.engine import RayEngine

        return self._part("ray", lambda: RayEngine(self.config.ray, self.config.ingest))

    def _build_ingestor(self):
        from ragline.ingest.chunking import Chunker
        from ragline.ingest.embedding_cache import EmbeddingCache
        from ragline.ingest.pipeline import Ingestor

        embedder, second_stage, parsers = self.embedder, self.second_stage, None
        if self.config.ingest.engine == "ray":
            engine = self.ray
            embedder, second_stage, parsers = engine.embedder(embedder), engine.second_stage(second_stage), engine.parsers
        return Ingestor(
            self.store, self.ledger, embedder, Chunker(self.config.chunking),
            EmbeddingCache(self.path / EMBEDDING_CACHE_FILE), self.config.ingest, second_stage=second_stage,
            parsers=parsers,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            parts, owned = self._parts, self._owned
            self._parts, self._owned = {}, set()
        for name, release in _CLOSERS.items():
            if name in parts and name in owned:
                release(parts[name])
