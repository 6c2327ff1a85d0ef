"""The response cache: SQLite (the default) and a real redis-server on 127.0.0.1 when one is
installed, both behind `CachedProvider` over the real in-process SmolLM2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ragline.llm.base import ChatMessage, ChatRequest, Completion
from ragline.llm.wrappers.cache import (
    CachedProvider,
    RedisResponseCache,
    ResponseCache,
    SqliteResponseCache,
)

REQUEST = ChatRequest(
    messages=[ChatMessage(role="user", content="Name a colour.")], max_tokens=6, prompt_version="p@1"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_entries_expire(tmp_path) -> None:
    clock = Clock()
    cache = SqliteResponseCache(tmp_path / "cache.sqlite", clock=clock)
    answer = Completion(text="blue", model="m")
    cache.put("k", answer, ttl=60)
    cache.put("forever", answer, ttl=None)
    assert cache.get("k") == answer
    clock.now += 61
    assert cache.get("k") is None
    assert cache.get("forever") == answer
    cache.close()
    reopened = SqliteResponseCache(tmp_path / "cache.sqlite", clock=clock)
    assert reopened.get("forever") == answer  # persisted in the store directory
    reopened.close()


def test_redis_entries_expire(redis_url: str) -> None:
    cache = RedisResponseCache(redis_url)
    answer = Completion(text="green", model="m")
    cache.put("short", answer, ttl=0.2)
    assert cache.get("short") == answer
    time.sleep(0.4)
    assert cache.get("short") is None
    cache.close()


def test_request_key_covers_what_decides_the_answer() -> None:
    base = REQUEST.key(model="chain(a/m)")
    assert REQUEST.key(model="chain(b/m)") != base
    assert REQUEST.model_copy(update={"prompt_version": "p@2"}).key(model="chain(a/m)") != base
    assert REQUEST.model_copy(update={"max_tokens": 7}).key(model="chain(a/m)") != base
    assert REQUEST.model_copy(update={"temperature": 0.5}).key(model="chain(a/m)") != base
    assert REQUEST.model_copy().key(model="chain(a/m)") == base


@pytest.fixture(params=["sqlite", "redis"])
def cache(tmp_path, request) -> Iterator[ResponseCache]:
    if request.param == "sqlite":
        backend: ResponseCache = SqliteResponseCache(tmp_path / "cache.sqlite")
    else:
        backend = RedisResponseCache(request.getfixturevalue("redis_url"))
    yield backend
    if request.param == "redis":
        backend._client.flushdb()
    backend.close()


def test_cached_provider_complete_then_stream_hit(cache: ResponseCache, local_llm) -> None:
    provider = CachedProvider(local_llm, cache, ttl=600)
    first = provider.complete(REQUEST)
    assert not first.cached and first.text
    again = provider.complete(REQUEST)
    assert again.cached and again.text == first.text and again.cost_usd == 0.0 and not again.attempts
    *deltas, last = list(provider.stream(REQUEST))
    assert "".join(c.delta for c in deltas) == first.text
    assert last.cached and last.usage == first.usage


def test_only_complete_streams_are_stored(tmp_path, local_llm) -> None:
    cache = SqliteResponseCache(tmp_path / "cache.sqlite")
    provider = CachedProvider(local_llm, cache)
    stream = provider.stream(REQUEST.model_copy(update={"max_tokens": 12}))
    next(stream)
    stream.close()  # the consumer gave up after one piece
    assert cache.get(REQUEST.model_copy(update={"max_tokens": 12}).key(model=provider.identity)) is None
    streamed = "".join(c.delta for c in provider.stream(REQUEST))
    hit = provider.complete(REQUEST)
    assert hit.cached and hit.text == streamed
    cache.close()


def test_async_paths_share_the_cache(tmp_path, local_llm) -> None:
    cache = SqliteResponseCache(tmp_path / "cache.sqlite")
    provider = CachedProvider(local_llm, cache)

    async def both():
        return await provider.acomplete(REQUEST), [c async for c in provider.astream(REQUEST)]

    first, pieces = asyncio.run(both())
    assert pieces[-1].cached and "".join(c.delta for c in pieces) == first.text
    cache.close()
