"""Build the configured LLM provider; the in-process llama.cpp model is the offline default."""

from __future__ import annotations

from ragline.config import ConfigError, LLMConfig, secret_from_env
from ragline.models import Usage
from ragline.pipelines.providers.base import LLMProvider


def make_provider(config: LLMConfig) -> LLMProvider:
    if config.provider == "openai":
        from ragline.pipelines.providers.openai import OpenAIProvider

        if not config.model:
            raise ConfigError("llm.model is required when llm.provider = 'openai' (e.g. 'gpt-4o-mini')")
        return OpenAIProvider(
            config.model,
            base_url=config.base_url,
            api_key=secret_from_env(config.api_key_env),
            timeout=config.timeout,
        )
    from ragline.pipelines.providers.llamacpp import LlamaCppProvider

    return LlamaCppProvider(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads)


def cost_usd(config: LLMConfig, usage: Usage) -> float:
    """Price of one call from the configured per-million-token prices."""
    return (
        usage.prompt_tokens * config.price_per_million_input
        + usage.completion_tokens * config.price_per_million_output
    ) / 1_000_000
