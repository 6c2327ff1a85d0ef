"""`[store]`, `[embedding]` and `[retrieval]`: where chunks live, how they are embedded and searched."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ragline.settings import Section

DEFAULT_STORE_DIR = ".ragline"


class StoreConfig(Section):
    kind: Literal["edge", "server"] = Field(
        "edge", description="edge: embedded Qdrant engine in the store directory; server: a Qdrant server."
    )
    path: str = Field(DEFAULT_STORE_DIR, description="Store directory (ledger, embedded shard, caches).")
    url: str | None = Field(None, description="Qdrant server URL (kind=server), or ':memory:' for tests.")
    api_key_env: str | None = Field(None, description="Env var holding the Qdrant API key (never the key itself).")
    collection: str = "ragline"
    dense_vector_name: str = Field("dense", description="LlamaIndex writes 'text-dense'.")
    sparse_vector_name: str = Field("bm25", description="LlamaIndex writes 'text-sparse'.")
    bm25_avg_len: float | None = Field(
        None, gt=0, description="BM25 average document length; default: measured from the first ingest, then fixed."
    )
    hnsw_threshold: int = Field(
        20_000, ge=1, description="Embedded store: points per segment above which `optimize` builds HNSW."
    )
    open_timeout: float = Field(
        0.0, ge=0, description="Embedded store: seconds to wait while another process holds the store "
        "(0: fail at once, naming the owner)."
    )

    def identity(self) -> str:
        """Which index this is, for names shared beyond this directory (the answer cache in
        Redis, a Temporal task queue): the server and collection, or the resolved directory."""
        return f"{self.url}/{self.collection}" if self.kind == "server" else str(Path(self.path).resolve())


class EmbeddingConfig(Section):
    provider: Literal["local", "openai"] = Field(
        "local", description="local: sentence-transformers in-process; openai: an OpenAI-compatible /embeddings endpoint."
    )
    model: str | None = Field(
        None, description="sentence-transformers model name or path (default: the bundled all-MiniLM-L6-v2), or the server's model name."
    )
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    query_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="local only: 'onnx' embeds queries through onnxruntime (the model is exported once per machine "
        "and checked against torch; models it cannot reproduce stay on torch); 'torch' always uses sentence-transformers.",
    )
    base_url: str = Field("https://api.openai.com/v1", description="provider = 'openai' only.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="provider = 'openai' only: env var holding the key.")
    api_key_file: Path | None = None
    timeout: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _server_model_named(self) -> EmbeddingConfig:
        if self.provider == "openai" and not self.model:
            raise ValueError("embedding.model is required when embedding.provider = 'openai' (e.g. 'text-embedding-3-small')")
        return self


class RetrievalConfig(Section):
    mode: Literal["dense", "sparse", "hybrid"] = Field(
        "hybrid", description="dense vectors, BM25, or both fused with RRF inside Qdrant."
    )
    candidates: int | None = Field(None, ge=1, description="Hits per first-stage prefetch (default: max(4*top_k, 50)).")
    target_documents: bool = Field(
        True, description="A question naming a period (\"Q2 2023\", \"fiscal 2023\") searches the documents named "
        "for it first; one asking for the latest version (\"the most recent 10-Q\") the newest document of each "
        "series its best hits come from (see ragline.retrieval.targeting).",
    )
    rerank: Literal["auto", "none", "onnx", "sentence-transformers", "vectors"] = Field(
        "auto", description="Second stage over the first stage's best hits: a cross-encoder (onnx, "
        "sentence-transformers), or vectors: a stronger bi-encoder's vectors, stored at ingest in stores created "
        "with this setting (~25x faster per query, one model run per chunk at ingest). auto: vectors, except for "
        "a store created without them, which keeps the bundled cross-encoder (onnx).",
    )
    rerank_model: str | None = Field(
        None, description="ONNX model folder, or a sentence-transformers CrossEncoder name/path; default bundled "
        "MiniLM-L-12 (vectors and auto: an ONNX encoder folder, default the store's own, and for a new store the "
        "bundled bge-small-en).",
    )
    rerank_query_instruction: str | None = Field(
        None, description="vectors only: text put before each question (default: bge's instruction for the "
        "bundled model, none for another).",
    )
    rerank_top_n: int | None = Field(
        None, ge=1, description="How many first-stage hits the second stage reads (default: 40 for vectors, "
        "where a candidate costs one stored vector; 20 for a cross-encoder, where it costs a model run).",
    )
    rerank_batch_size: int = Field(16, ge=1)
    rerank_fusion: Literal["rrf", "none"] = Field(
        "rrf", description="rrf: fuse the second stage's ranking with the first stage's (RRF); none: second stage only."
    )
    mmr: bool = Field(
        False, description="Re-order the final candidates by maximal marginal relevance (fewer near-duplicates)."
    )
    mmr_lambda: float = Field(
        0.4, ge=0.0, le=1.0,
        description="MMR trade-off: 1 is relevance only, 0 is diversity only. Below 0.5 because relevance is "
        "min-max scaled: at 0.5 an exact copy of the best hit would still outrank most distinct hits.",
    )

    @property
    def rerank_depth(self) -> int:
        """`rerank_top_n`, or its default for the configured second stage (auto's as vectors:
        `Components.retrieval` resolves auto against the store before anything reads this)."""
        return self.rerank_top_n or (40 if self.rerank in ("vectors", "auto") else 20)
