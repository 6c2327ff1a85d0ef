"""Configuration: `ragline.toml` (or an explicit file), overridden by `RAGLINE_*` env vars.

Precedence, highest first: keyword overrides passed in code, environment variables
(`RAGLINE_LLM__PROVIDER=openai`, nested with `__`), the TOML file, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ragline.pipelines.reliability.breaker import BreakerSettings
from ragline.pipelines.reliability.budget import BudgetLimits
from ragline.pipelines.reliability.chain import RetryPolicy
from ragline.tracing.setup import TracingConfig

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
    rerank_fusion: Literal["rrf", "none"] = Field(
        "rrf", description="rrf: fuse the cross-encoder's ranking with the first stage's (RRF); none: cross-encoder only."
    )
    mmr: bool = Field(
        False, description="Re-order the final candidates by maximal marginal relevance (fewer near-duplicates)."
    )
    mmr_lambda: float = Field(
        0.4, ge=0.0, le=1.0,
        description="MMR trade-off: 1 is relevance only, 0 is diversity only. Below 0.5 because relevance is "
        "min-max scaled: at 0.5 an exact copy of the best hit would still outrank most distinct hits.",
    )


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


ProviderKind = Literal["openai", "anthropic", "ollama", "llamacpp"]


class ModelConfig(BaseModel):
    """One `[[models]]` entry: a provider in the fallback chain, tried in the order listed."""

    name: str = Field(description="Names this entry in attempts, traces and errors.")
    provider: ProviderKind
    model: str | None = Field(None, description="The provider's model name (llamacpp: a GGUF path; default bundled SmolLM2).")
    base_url: str | None = Field(None, description="Default: the provider's public endpoint (ollama: http://127.0.0.1:11434).")
    api_key_env: str | None = Field(None, description="Env var holding the API key.")
    api_key_file: Path | None = Field(None, description="A file holding only the API key (e.g. a mounted secret).")
    price_per_million_input: float = Field(0.0, ge=0.0, description="USD per 1M prompt tokens.")
    price_per_million_output: float = Field(0.0, ge=0.0, description="USD per 1M completion tokens.")
    context_window: int | None = Field(None, ge=1, description="Tokens the model accepts; a context-length error falls back to a larger one.")
    timeout: float = Field(60.0, gt=0, description="Seconds per call (per next piece when streaming).")

    @model_validator(mode="after")
    def _model_named(self) -> ModelConfig:
        if self.provider != "llamacpp" and not self.model:
            raise ValueError(f"[[models]] {self.name!r}: model is required for provider {self.provider!r}")
        return self


class ReliabilityConfig(RetryPolicy):
    """`[reliability]`: the retry/fallback policy of the chain, plus its circuit breakers."""

    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


class CacheConfig(BaseModel):
    enabled: bool = Field(True, description="Answer an identical request (same models, parameters, messages, prompt version) from the cache.")
    backend: Literal["sqlite", "redis"] = Field("sqlite", description="sqlite: a file in the store directory.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    ttl_seconds: float | None = Field(7 * 24 * 3600, gt=0, description="How long an answer stays valid; None: forever.")


class PromptsConfig(BaseModel):
    dir: Path = Field(Path("prompts"), description="Your prompt files (NAME.j2) and manifest.json.")
    synthesis: str = Field(
        "synthesis", description="The answer prompt: name, name@label or name@hash; a bare name falls back to ragline's built-in prompt when the folder has none."
    )


class PipelinesConfig(BaseModel):
    dir: Path = Field(Path("pipelines"), description="Pipeline files: NAME.yaml, .toml or .json.")


class ReplayConfig(BaseModel):
    """Record every model call to a cassette, or answer from one offline (`--record` / `--replay`)."""

    record: Path | None = Field(None, description="Write every model call to this JSON Lines cassette (starts it afresh).")
    replay: Path | None = Field(None, description="Answer every model call from this cassette; a request not in it fails.")

    @model_validator(mode="after")
    def _one_mode(self) -> ReplayConfig:
        if self.record and self.replay:
            raise ValueError("replay.record and replay.replay exclude each other: record once, then replay")
        return self


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
    models: list[ModelConfig] = Field(
        default_factory=list, description="The provider chain, tried in order; empty: just [llm]."
    )
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    budget: BudgetLimits = Field(default_factory=BudgetLimits)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"[[models]] names must be unique; repeated: {', '.join(duplicated)}")
        return models

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


def secret_from_env(env_var: str | None, file: Path | None = None) -> str | None:
    """Read a secret by env-var name, else from a file holding only it; config files name
    where the secret is, never hold the value."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    if file is None:
        return None
    try:
        return Path(file).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {file}: {exc.strerror}") from None
