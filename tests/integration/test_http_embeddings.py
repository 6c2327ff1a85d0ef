"""HttpEmbedder against an OpenAI-compatible /v1/embeddings server on 127.0.0.1 answered by the
real MiniLM: the vectors must be the local Embedder's, and failures must name the URL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from llm_server import free_port
from protocol_servers import EmbeddingsHandler, ProtocolServer

from ragline.retrieval.http_embeddings import EmbeddingError, HttpEmbedder

API_KEY = "sk-embed-91b7-very-secret"
TEXTS = [
    "Qdrant stores dense and sparse vectors.",
    "The capital of France is Paris.",
    "llama.cpp runs small models on a CPU.",
    "Retries honour the Retry-After header.",
    "A circuit breaker skips a failing provider.",
]


@pytest.fixture(scope="module")
def server(embedder) -> Iterator[ProtocolServer]:
    with ProtocolServer(EmbeddingsHandler, embedder, API_KEY) as running:
        yield running


def _client(server: ProtocolServer, case: str = "ok", **kw) -> HttpEmbedder:
    kw.setdefault("api_key", API_KEY)
    return HttpEmbedder("all-MiniLM-L6-v2", base_url=server.base_url(case), timeout=30, **kw)


@pytest.mark.parametrize("case", ["ok", "raw"])  # raw: the server does not normalize
def test_vectors_match_the_local_embedder(server: ProtocolServer, embedder, case: str) -> None:
    client = _client(server, case, batch_size=2)
    before = len(server.requests)
    remote = np.array(client.embed(TEXTS, show_progress=True))
    assert [len(body["input"]) for _, body in server.requests[before:]] == [2, 2, 1]

    local = np.array(embedder.embed(TEXTS))
    assert remote.shape == local.shape == (len(TEXTS), embedder.dim)
    assert np.allclose(np.linalg.norm(remote, axis=1), 1.0)
    assert (np.sum(remote * local, axis=1) > 0.999).all()  # cosine, both unit length
    assert np.dot(client.embed_query(TEXTS[1]), local[1]) > 0.999
    client.close()


def test_interface_matches_embedder(server: ProtocolServer, embedder) -> None:
    client = _client(server)
    assert client.model_id == "http:all-MiniLM-L6-v2"  # never shares cache entries with a local model
    assert client.fingerprint() == "embedder=http:all-MiniLM-L6-v2"
    assert client.dim == embedder.dim == 384
    assert client.embed([]) == []
    assert API_KEY not in repr(client)
    client.close()


@pytest.mark.parametrize(
    ("case", "api_key", "match"),
    [
        ("boom", API_KEY, "HTTP 500: .*embedding backend down"),
        ("garbage", API_KEY, "malformed response"),
        ("short", API_KEY, "sent 2 texts, got 1 vectors back"),
        ("ok", "sk-wrong-key", r"HTTP 401: .*\*\*\*"),  # the server echoes the key back
    ],
)
def test_errors_name_the_url_never_the_key(
    server: ProtocolServer, case: str, api_key: str, match: str
) -> None:
    client = _client(server, case, api_key=api_key)
    with pytest.raises(EmbeddingError, match=match) as err:
        client.embed(TEXTS[:2])
    assert f"{server.base_url(case)}/embeddings" in str(err.value)
    assert api_key not in str(err.value)


def test_connection_refused_names_the_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EmbeddingError, match="request failed") as err:
        HttpEmbedder("m", base_url=base_url).embed_query("x")
    assert f"{base_url}/embeddings" in str(err.value)


def test_configured_server_embeddings_ingest_and_retrieve(server: ProtocolServer, tmp_path, monkeypatch) -> None:
    """`[embedding] provider = "openai"` through `ragline.open`: ingest and search use the
    server's vectors, and the key comes from the named env var."""
    from conftest import SAMPLES

    import ragline

    monkeypatch.setenv("EMBED_KEY", API_KEY)
    settings = {"provider": "openai", "model": "all-MiniLM-L6-v2", "base_url": server.base_url("ok"), "api_key_env": "EMBED_KEY"}
    with ragline.open(tmp_path / "store", embedding=settings, retrieval={"rerank": "none"}) as rag:
        assert rag.embedder.model_id == "http:all-MiniLM-L6-v2"
        report = rag.ingest(SAMPLES)
        assert report.failed == 0 and report.chunks_embedded > 0
        hits = rag.retrieve("How many days of paid leave do new employees get?", top_k=3)
    assert hits[0].document_id.endswith("employee-handbook.md")
