"""Build the configured provider chain: `[[models]]` in order, or the single `[llm]` model.

The in-process llama.cpp model is the offline default; HTTP providers are imported only when
configured.
"""

from __future__ import annotations

from ragline.config import (
    ConfigError,
    LLMConfig,
    ModelConfig,
    RaglineConfig,
    secret_from_env,
)
from ragline.pipelines.providers.base import LLMProvider
from ragline.pipelines.reliability.breaker import CircuitBreaker
from ragline.pipelines.reliability.budget import Budget
from ragline.pipelines.reliability.chain import ChainMember, ModelChain
from ragline.pipelines.reliability.pricing import Price

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://127.0.0.1:11434",
}


def model_configs(config: RaglineConfig) -> list[ModelConfig]:
    """The chain's entries; without `[[models]]`, one entry made from `[llm]`."""
    if config.models:
        return config.models
    llm = config.llm
    if llm.provider == "openai" and not llm.model:
        raise ConfigError("llm.model is required when llm.provider = 'openai' (e.g. 'gpt-4o-mini')")
    return [
        ModelConfig(
            name=llm.provider, provider=llm.provider, model=llm.model, base_url=llm.base_url,
            api_key_env=llm.api_key_env, timeout=llm.timeout,
            price_per_million_input=llm.price_per_million_input,
            price_per_million_output=llm.price_per_million_output,
        )
    ]  # fmt: skip


def make_provider(spec: ModelConfig, llm: LLMConfig) -> LLMProvider:
    """One provider from its `[[models]]` entry (`llm` gives llama.cpp's threads and context)."""
    base_url = spec.base_url or DEFAULT_BASE_URLS.get(spec.provider)
    api_key = secret_from_env(spec.api_key_env, spec.api_key_file)
    provider: LLMProvider
    if spec.provider == "openai":
        from ragline.pipelines.providers.openai import OpenAIProvider

        provider = OpenAIProvider(spec.model, base_url=base_url, api_key=api_key, timeout=spec.timeout, name=spec.name)
    elif spec.provider == "anthropic":
        from ragline.pipelines.providers.anthropic import AnthropicProvider

        provider = AnthropicProvider(spec.model, base_url=base_url, api_key=api_key, timeout=spec.timeout, name=spec.name)
    elif spec.provider == "ollama":
        from ragline.pipelines.providers.ollama import OllamaProvider

        provider = OllamaProvider(spec.model, base_url=base_url, api_key=api_key, timeout=spec.timeout, name=spec.name)
    else:
        from ragline.pipelines.providers.llamacpp import LlamaCppProvider

        # llama.cpp's window is its (padded) n_ctx; it sets context_window itself.
        return LlamaCppProvider(spec.model, n_ctx=spec.context_window or llm.n_ctx, n_threads=llm.n_threads, name=spec.name)
    if spec.context_window:
        provider.context_window = spec.context_window
    return provider


def price_of(spec: ModelConfig) -> Price:
    return Price(input_per_million=spec.price_per_million_input, output_per_million=spec.price_per_million_output)


def make_chain(config: RaglineConfig, budget: Budget) -> ModelChain:
    """The configured providers behind one retry/fallback loop, each with its own breaker."""
    members = [
        ChainMember(
            make_provider(spec, config.llm), price=price_of(spec), timeout=spec.timeout,
            breaker=CircuitBreaker(config.reliability.breaker),
        )
        for spec in model_configs(config)
    ]  # fmt: skip
    return ModelChain(members, policy=config.reliability, budget=budget)
