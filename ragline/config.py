"""Configuration: `ragline.toml` (or an explicit file), overridden by `RAGLINE_*` env vars.

Precedence, highest first: keyword overrides passed in code, environment variables
(`RAGLINE_LLM__PROVIDER=openai`, nested with `__`), the TOML file, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "ragline.toml"
DEFAULT_STORE_DIR = ".ragline"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and field to fix."""


class StoreConfig(BaseModel):
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


class EmbeddingConfig(BaseModel):
    model: str | None = Field(
        None, description="sentence-transformers model name or path; default: the bundled all-MiniLM-L6-v2."
    )
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"


class ChunkingConfig(BaseModel):
    chunk_size: int = Field(
        200, ge=32, description="Maximum tokens (words and punctuation) per chunk; MiniLM reads ~256 word pieces."
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens repeated from the end of the previous chunk.")

    @model_validator(mode="after")
    def _overlap_smaller_than_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        return self


class IngestConfig(BaseModel):
    max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Larger documents are reported as too large, not parsed."
    )
    max_delete_fraction: float = Field(
        0.2, ge=0.0, le=1.0,
        description="A run refuses to delete more than this share of a source's documents (see allow_mass_delete).",
    )
    allow_mass_delete: bool = False
    batch_chunks: int = Field(256, ge=1, description="Chunks embedded and written per ledger commit.")


class RetrievalConfig(BaseModel):
    mode: Literal["dense", "sparse", "hybrid"] = Field(
        "hybrid", description="dense vectors, BM25, or both fused with RRF inside Qdrant."
    )
    candidates: int | None = Field(None, ge=1, description="Hits per first-stage prefetch (default: max(4*top_k, 50)).")
    rerank: Literal["none", "onnx", "sentence-transformers"] = Field(
        "onnx", description="Cross-encoder reranking of the first stage's best hits."
    )
    rerank_model: str | None = Field(
        None, description="ONNX model folder, or a sentence-transformers CrossEncoder name/path; default bundled MiniLM-L-12."
    )
    rerank_top_n: int = Field(20, ge=1, description="How many first-stage hits the reranker reads.")
    rerank_batch_size: int = Field(16, ge=1)


class SourceConfig(BaseModel):
    """One `[[sources]]` entry: a connector kind plus that connector's own settings."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="filesystem, web, dataset, sql, or a plugin's kind.")

    def connector_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LLMConfig(BaseModel):
    provider: Literal["llamacpp", "openai"] = "llamacpp"
    model: str | None = Field(None, description="Model name (openai) or GGUF path (llamacpp; default bundled SmolLM2).")
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Env var holding the API key.")
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout: float = Field(120.0, gt=0)
    n_ctx: int = Field(2048, ge=256, description="llamacpp context window.")
    n_threads: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) // 2),
        ge=1,
        description="llamacpp CPU threads; half the cores by default (all of them collapses under load).",
    )
    price_per_million_input: float = Field(0.0, ge=0.0, description="USD per 1M prompt tokens.")
    price_per_million_output: float = Field(0.0, ge=0.0, description="USD per 1M completion tokens.")

    @field_validator("model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


class QueryConfig(BaseModel):
    top_k: int = Field(4, ge=1, description="Chunks given to the LLM as numbered sources.")
    max_source_chars: int = Field(1200, ge=100, description="Each source is cut to this many characters.")


class RaglineConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGLINE_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    sources: list[SourceConfig] = Field(
        default_factory=list, description="What `ragline ingest` with no paths reads."
    )
    llm: LLMConfig = Field(default_factory=LLMConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if toml_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(config_file: str | Path | None = None, **overrides: Any) -> RaglineConfig:
    """Load configuration; `config_file=None` reads ./ragline.toml when it exists.

    `overrides` are nested dicts per section, e.g. `store={"path": "x"}`; they win over
    everything else.
    """
    path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
    if config_file and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    toml_file = path if path.is_file() else None

    class _Config(RaglineConfig):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        # Overrides merge into the env/TOML result, so one nested field does not erase its siblings.
        base = _Config()
        config = RaglineConfig.model_validate(_deep_merge(base.model_dump(), overrides)) if overrides else base
        return RaglineConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        where = f"{toml_file}" if toml_file else "settings"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration in {where} (or RAGLINE_* environment variables): {problems}"
        ) from None
    except Exception as exc:  # TOML syntax errors and the like
        if toml_file is None:
            raise
        raise ConfigError(f"cannot read config file {toml_file}: {exc}") from None


def secret_from_env(env_var: str | None) -> str | None:
    """Read a secret by env-var name; config files name the variable, never hold the value."""
    return os.environ.get(env_var) if env_var else None
