"""`[llm]`, `[[models]]`, `[reliability]`, `[cache]` and `[replay]`: the model stack's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragline.llm.breaker import BreakerSettings
from ragline.llm.chain import RetryPolicy
from ragline.settings import Section


class LLMConfig(Section):
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


class ModelConfig(Section):
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


class CacheConfig(Section):
    enabled: bool = Field(True, description="Answer an identical request (same models, parameters, messages, prompt version) from the cache.")
    backend: Literal["sqlite", "redis"] = Field("sqlite", description="sqlite: a file in the store directory.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    ttl_seconds: float | None = Field(7 * 24 * 3600, gt=0, description="How long an answer stays valid; None: forever.")
    answers: bool = Field(
        True, description="Also keep whole answers in front of retrieval, keyed by the question, settings, prompt "
        "version, the caller's principals and the store generation (every ingest commit bumps it): a repeated "
        "question on an unchanged store skips retrieval and reranking.",
    )


class ReplayConfig(Section):
    """Record every model call to a cassette, or answer from one offline (`--record` / `--replay`)."""

    record: Path | None = Field(None, description="Write every model call to this JSON Lines cassette (starts it afresh).")
    replay: Path | None = Field(None, description="Answer every model call from this cassette; a request not in it fails.")

    @model_validator(mode="after")
    def _one_mode(self) -> ReplayConfig:
        if self.record and self.replay:
            raise ValueError("replay.record and replay.replay exclude each other: record once, then replay")
        return self
