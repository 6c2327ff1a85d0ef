"""The model stack of a store, built from config in one place, and closed in one place.

Bottom to top: the providers (`[[models]]` in order, or the single `[llm]` model; an HTTP
provider's module is imported only when configured) behind one retry/fallback chain with a
circuit breaker each and the budget; the response cache over the chain; recording or replay
over the whole stack, so a replay returns exactly what was recorded (attempts and cache flags
included); tracing outermost, so a cache hit is a span too.
"""

from __future__ import annotations

from pathlib import Path

from ragline.config import ConfigError, RaglineConfig, secret_from_env
from ragline.llm.base import LLMProvider
from ragline.llm.breaker import CircuitBreaker
from ragline.llm.budget import Budget
from ragline.llm.chain import ChainMember, ModelChain
from ragline.llm.config import LLMConfig, ModelConfig
from ragline.llm.pricing import Price
from ragline.llm.wrappers.base import identity
from ragline.llm.wrappers.cache import CachedProvider, RedisResponseCache, ResponseCache, SqliteResponseCache
from ragline.llm.wrappers.replay import Cassette, RecordingProvider, ReplayProvider
from ragline.state.url import shared_state_url
from ragline.tracing.setup import Tracing

RESPONSE_CACHE_FILE = "llm-cache.sqlite"
BUDGET_FILE = "budget.sqlite"

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
    api_key = secret_from_env(spec.api_key_env, spec.api_key_file)
    http = {
        "base_url": spec.base_url or DEFAULT_BASE_URLS.get(spec.provider), "api_key": api_key,
        "timeout": spec.timeout, "name": spec.name, "missing_key": None if api_key else missing_key(spec),
    }  # fmt: skip
    provider: LLMProvider
    if spec.provider == "openai":
        from ragline.llm.providers.openai import OpenAIProvider

        provider = OpenAIProvider(spec.model, **http)
    elif spec.provider == "anthropic":
        from ragline.llm.providers.anthropic import AnthropicProvider

        provider = AnthropicProvider(spec.model, **http)
    elif spec.provider == "ollama":
        from ragline.llm.providers.ollama import OllamaProvider

        provider = OllamaProvider(spec.model, **http)
    else:
        from ragline.llm.providers.llamacpp import LlamaCppProvider

        # llama.cpp's window is its (padded) n_ctx; it sets context_window itself.
        return LlamaCppProvider(spec.model, n_ctx=spec.context_window or llm.n_ctx, n_threads=llm.n_threads, name=spec.name)
    if spec.context_window:
        provider.context_window = spec.context_window
    return provider


def missing_key(spec: ModelConfig) -> str:
    """Where a key was looked for and not found, for the provider's auth errors: an
    OpenAI-compatible server without auth needs none, so a missing key is no error by itself."""
    looked = [f"${spec.api_key_env} is not set"] if spec.api_key_env else []
    if spec.api_key_file:
        looked.append(f"{spec.api_key_file} is empty")
    return " and ".join(looked) or "no api_key_env or api_key_file is configured"


def price_of(spec: ModelConfig) -> Price:
    return Price(input_per_million=spec.price_per_million_input, output_per_million=spec.price_per_million_output)


def make_chain(config: RaglineConfig, budget: Budget, provider: LLMProvider | None = None) -> ModelChain:
    """The configured providers behind one retry/fallback loop, each with its own breaker;
    an injected `provider` replaces them (priced as the first configured model), and an
    injected chain is used as it is."""
    if isinstance(provider, ModelChain):
        return provider
    if provider is not None:
        spec = model_configs(config)[0]
        member = ChainMember(provider, price=price_of(spec), breaker=CircuitBreaker(config.reliability.breaker))
        return ModelChain([member], policy=config.reliability, budget=budget)
    members = [
        ChainMember(
            make_provider(spec, config.llm), price=price_of(spec), timeout=spec.timeout,
            breaker=CircuitBreaker(config.reliability.breaker),
        )
        for spec in model_configs(config)
    ]  # fmt: skip
    return ModelChain(members, policy=config.reliability, budget=budget)


class LLMStack:
    """Every layer between a query and its providers. `llm(cache=False)` is the same stack
    without the response cache. `close` releases what the stack built, top down; an injected
    provider is the caller's to close."""

    def __init__(self, config: RaglineConfig, store_dir: Path, tracing: Tracing, *, provider: LLMProvider | None = None):
        self.budget = Budget(config.budget, day_path=store_dir / BUDGET_FILE, day_url=shared_state_url(config))
        self.chain = make_chain(config, self.budget, provider)
        self._owns_chain = provider is None
        replay = config.replay
        self.cassette = Cassette.create(replay.record) if replay.record else (
            Cassette.load(replay.replay) if replay.replay else None
        )  # fmt: skip
        self.cache: ResponseCache | None = None
        if config.cache.enabled:
            self.cache = (
                RedisResponseCache(config.cache.redis_url) if config.cache.backend == "redis"
                else SqliteResponseCache(store_dir / RESPONSE_CACHE_FILE)
            )  # fmt: skip
        self._replaying = bool(replay.replay)
        self._tracing = tracing
        self.uncached = self._outer(self.chain)
        cached = CachedProvider(self.chain, self.cache, ttl=config.cache.ttl_seconds) if self.cache else None
        self.cached = self._outer(cached) if cached else self.uncached

    def _outer(self, stack: LLMProvider) -> LLMProvider:
        if self.cassette is not None:
            stack = (
                ReplayProvider(self.cassette, identity=identity(stack)) if self._replaying
                else RecordingProvider(stack, self.cassette)
            )  # fmt: skip
        return self._tracing.wrap(stack)

    def llm(self, *, cache: bool = True) -> LLMProvider:
        return self.cached if cache else self.uncached

    @property
    def model(self) -> str:
        return self.chain.model

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        if self._owns_chain:
            self.chain.close()
        self.budget.close()
