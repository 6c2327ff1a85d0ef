"""Dense embeddings from an OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, llama.cpp
server, Ollama's /v1, text-embeddings-inference, ...), as a drop-in for the local `Embedder`
when the model lives on a server."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import httpx

_MAX_ERROR_CHARS = 300


class EmbeddingError(RuntimeError):
    """An embeddings request failed; the message names the URL, never the API key."""


class HttpEmbedder:
    """Same interface as `ragline.retrieval.embeddings.Embedder`: `model_id`, `dim`,
    `fingerprint()`, `embed()`, `embed_query()`. Texts go out `batch_size` per request;
    vectors come back L2-normalized (servers do not all normalize) in input order."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 64,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.batch_size = batch_size
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout))

    def __repr__(self) -> str:  # never shows the key
        return f"HttpEmbedder(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def model_id(self) -> str:
        """Stable identity of the model, used in fingerprints and cache keys; prefixed so a
        server alias never shares cached vectors with a local model of the same name."""
        return f"http:{self.model}"

    @cached_property
    def dim(self) -> int:
        return len(self.embed_query("dimension probe"))

    def fingerprint(self) -> str:
        return f"embedder={self.model_id}"

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[float]]:
        starts = range(0, len(texts), self.batch_size)
        if show_progress and len(starts) > 1:
            from rich.progress import track

            starts = track(starts, description="embedding", total=len(starts))
        vectors: list[list[float]] = []
        for start in starts:
            vectors.extend(self._embed_batch(list(texts[start : start + self.batch_size])))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]

    def close(self) -> None:
        self._client.close()

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        try:
            response = self._client.post(self.url, json={"model": self.model, "input": texts})
        except httpx.HTTPError as exc:
            raise self._error(f"request failed ({type(exc).__name__}: {exc})") from None
        if not response.is_success:
            body = response.text.strip()[:_MAX_ERROR_CHARS] or response.reason_phrase
            raise self._error(f"HTTP {response.status_code}: {body}")
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [_normalized(item["embedding"]) for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"malformed response ({exc!r}): {response.text[:200]!r}") from None
        if len(vectors) != len(texts):
            raise self._error(f"sent {len(texts)} texts, got {len(vectors)} vectors back")
        return vectors

    def _error(self, message: str) -> EmbeddingError:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return EmbeddingError(f"embeddings from {self.url} ({self.model}): {message}")


def _normalized(vector: Any) -> list[float]:
    values = [float(x) for x in vector]
    norm = math.sqrt(sum(x * x for x in values))
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError(f"cannot normalize a vector of norm {norm}")
    return [x / norm for x in values]
