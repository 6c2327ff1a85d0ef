"""The answer cache: a repeated question on an unchanged store costs a key lookup.

The response cache (`ragline.llm.wrappers.cache`) sits behind retrieval and reranking: a
repeated question still pays for both before its request is found. This cache sits in front
of them and keeps whole `Answer`s, keyed by everything that decides one:

- the question, and the pipeline it runs (top_k, filters, depths, rerank and MMR steps);
- the retrieval, embedding, query, prompt and model settings, and the model stack's identity;
- the synthesis prompt's version (an edited template is another key);
- the caller's partition (the hash of its effective principals: a hard key component);
- the store (its server and collection, or its directory: stores sharing one Redis never
  share answers) and its generation, which every ledger commit, readers change and deletion
  bumps (with `[shared_state]`, every replica's too), so a changed index never serves a
  stale answer.

Only complete answers are stored; a hit is marked `cached=True`, costs nothing, and carries
the trace id of the request that found it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ragline.llm.wrappers.cache import RedisResponseCache, ResponseCache, SqliteResponseCache
from ragline.models import Answer

ANSWER_TABLE = "answers"
REDIS_ANSWER_PREFIX = "ragline:answer-cache:"
# The settings sections an answer depends on (secrets are never in them: only env var names).
KEY_SECTIONS = ("retrieval", "embedding", "query", "prompts", "llm", "models", "chunking")


class AnswerCache:
    def __init__(self, backend: ResponseCache[Answer], ttl: float | None):
        self.backend, self.ttl = backend, ttl

    @classmethod
    def for_store(cls, config, store_dir: Path, cache_file: str) -> AnswerCache | None:
        """The cache `[cache]` configures beside the response cache (same backend, own table
        or key prefix); None when caching is off or a cassette records or replays (every
        model call must reach it)."""
        settings = config.cache
        if not (settings.enabled and settings.answers) or config.replay.record or config.replay.replay:
            return None
        backend: ResponseCache[Answer] = (
            RedisResponseCache(settings.redis_url, model=Answer, prefix=REDIS_ANSWER_PREFIX)
            if settings.backend == "redis"
            else SqliteResponseCache(store_dir / cache_file, model=Answer, table=ANSWER_TABLE)
        )
        return cls(backend, settings.ttl_seconds)

    def get(self, key: str, *, trace_id: str) -> Answer | None:
        found = self.backend.get(key)
        return found.model_copy(update={"trace_id": trace_id, "cached": True}) if found else None

    def put(self, key: str, answer: Answer) -> None:
        self.backend.put(key, answer.model_copy(update={"cost_usd": 0.0, "attempts": [], "cached": False}), self.ttl)

    def close(self) -> None:
        self.backend.close()


def answer_key(
    config, *, question: str, pipeline: dict[str, Any], prompt_version: str, model_identity: str,
    partition: str | None, store: str, generation: str,
) -> str:  # fmt: skip
    """sha256 over everything that decides an answer (see the module docstring)."""
    body = {
        "question": question,
        "pipeline": pipeline,
        "settings": {section: getattr(config, section) for section in KEY_SECTIONS},
        "prompt_version": prompt_version,
        "model": model_identity,
        "partition": partition,
        "store": store,
        "generation": generation,
    }
    encoded = json.dumps(body, sort_keys=True, ensure_ascii=False, default=_plain)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else str(value)
