"""An exact-match response cache: the same request to the same provider stack is paid once.

The key is a sha256 over the stack's identity (providers and models, never credentials), the
generation parameters, the rendered messages and the prompt version (`ChatRequest.key`). Only
complete answers are stored: a failed or interrupted stream leaves nothing behind. A hit costs
nothing and is marked `cached=True` with no attempts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from ragline.llm.base import (
    ChatRequest,
    Completion,
    LLMProvider,
    StreamChunk,
)
from ragline.llm.streams import StreamRecorder, completion_as_stream
from ragline.llm.wrappers.base import WrapperProvider

REDIS_PREFIX = "ragline:llm-cache:"
M = TypeVar("M", bound=BaseModel)


class ResponseCache(ABC, Generic[M]):
    """Stored values (completions by default; the answer cache keeps `Answer`s) by key,
    each with a time to live."""

    @abstractmethod
    def get(self, key: str) -> M | None: ...

    @abstractmethod
    def put(self, key: str, value: M, ttl: float | None) -> None: ...

    def close(self) -> None:
        """Release the connection."""


class SqliteResponseCache(ResponseCache[M]):
    """The embedded default: one SQLite file in the store directory, a table per kind of value."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, model: type[M] = Completion,
                 table: str = "responses"):  # fmt: skip
        if not table.isidentifier():
            raise ValueError(f"cache table name {table!r} must be an identifier")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock, self._model, self._table = clock, model, table
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.executescript(
            f"""
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS {table} (
                key TEXT PRIMARY KEY, completion TEXT NOT NULL, expires_at REAL);
            """
        )

    def get(self, key: str) -> M | None:
        with self._lock:
            row = self._db.execute(f"SELECT completion, expires_at FROM {self._table} WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if row[1] is not None and row[1] <= self._clock():
                self._db.execute(f"DELETE FROM {self._table} WHERE key = ?", (key,))
                return None
        return self._model.model_validate_json(row[0])

    def put(self, key: str, value: M, ttl: float | None) -> None:
        expires_at = self._clock() + ttl if ttl else None
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO {self._table} (key, completion, expires_at) VALUES (?, ?, ?)",
                (key, value.model_dump_json(), expires_at),
            )

    def close(self) -> None:
        self._db.close()


class RedisResponseCache(ResponseCache[M]):
    """A cache shared by many processes and machines; Redis expires entries itself."""

    def __init__(self, url: str, *, model: type[M] = Completion, prefix: str = REDIS_PREFIX):
        try:
            import redis
        except ImportError as exc:
            raise RuntimeError("the Redis cache needs the redis package: pip install 'ragline[redis]'") from exc
        self._client = redis.Redis.from_url(url)
        self._model, self._prefix = model, prefix

    def get(self, key: str) -> M | None:
        raw = self._client.get(self._prefix + key)
        return self._model.model_validate_json(raw) if raw else None

    def put(self, key: str, value: M, ttl: float | None) -> None:
        self._client.set(self._prefix + key, value.model_dump_json(), px=int(ttl * 1000) if ttl else None)

    def close(self) -> None:
        self._client.close()


class CachedProvider(WrapperProvider):
    def __init__(self, wrapped: LLMProvider, cache: ResponseCache, *, ttl: float | None = None):
        super().__init__(wrapped)
        self.cache = cache
        self.ttl = ttl

    def _key(self, request: ChatRequest) -> str:
        return request.key(model=self.identity)

    def _store(self, request: ChatRequest, completion: Completion) -> None:
        self.cache.put(self._key(request), completion.model_copy(update={"attempts": [], "cost_usd": 0.0}), self.ttl)

    def _hit(self, request: ChatRequest) -> Completion | None:
        found = self.cache.get(self._key(request))
        return found.model_copy(update={"cached": True, "cost_usd": 0.0, "attempts": []}) if found else None

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        if (hit := self._hit(request)) is not None:
            return hit
        completion = self.wrapped.complete(request, timeout=timeout)
        self._store(request, completion)
        return completion

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        if (hit := self._hit(request)) is not None:
            return hit
        completion = await self.wrapped.acomplete(request, timeout=timeout)
        self._store(request, completion)
        return completion

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        if (hit := self._hit(request)) is not None:
            yield from completion_as_stream(hit)
            return
        recorder = StreamRecorder()
        for chunk in self.wrapped.stream(request, timeout=timeout):
            yield recorder.take(chunk)
        self._store(request, recorder.completion(self.wrapped.model))

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        if (hit := self._hit(request)) is not None:
            for chunk in completion_as_stream(hit):
                yield chunk
            return
        recorder = StreamRecorder()
        async for chunk in self.wrapped.astream(request, timeout=timeout):
            yield recorder.take(chunk)
        self._store(request, recorder.completion(self.wrapped.model))

    def close(self) -> None:
        self.cache.close()
        super().close()
