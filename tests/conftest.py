"""Session-wide fixtures for both layers: real models are loaded once per test session.

`unit/` runs without model servers or CLI subprocesses; `integration/` has the real llama.cpp
server, fault proxies, subprocesses and the shared example documents. The servers and
proxies the tests start live in `support/` (importable as top-level modules).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Query-encoder exports (ragline/retrieval/onnx_query.py) go to a test cache, not ~/.cache;
# exports are keyed by model files, so reusing it across runs is safe. CLI subprocesses inherit it.
os.environ.setdefault("RAGLINE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "ragline-test-cache"))

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
EXAMPLE_DOCS = ROOT.parent / "shared" / "data" / "unstructured-example-docs"


@pytest.fixture(scope="session")
def example_docs() -> Path:
    if not EXAMPLE_DOCS.is_dir():
        pytest.skip(f"shared example docs not found at {EXAMPLE_DOCS}")
    return EXAMPLE_DOCS


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """One throwaway PostgreSQL server on 127.0.0.1 for the session (skips when it cannot start)."""
    from postgres_server import postgres_server

    with postgres_server(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def redis_url():
    from redis_server import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def embedder():
    from ragline.retrieval.embeddings import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def _samples_store_template(tmp_path_factory, embedder) -> Path:
    import ragline

    path = tmp_path_factory.mktemp("samples-store-template")
    with ragline.open(path, embedder=embedder) as rag:
        report = rag.ingest(SAMPLES)
    assert report.failed == 0 and report.added > 0, report
    return path


@pytest.fixture
def samples_store(_samples_store_template, tmp_path) -> Path:
    """A private copy of a store holding `samples/` (ingested once per session): tests may
    add caches, traces and cassettes to it without seeing each other's."""
    import shutil

    copy = tmp_path / "samples-store"
    shutil.copytree(_samples_store_template, copy)
    return copy


@pytest.fixture(scope="session")
def local_llm():
    from ragline.llm.providers.llamacpp import LlamaCppProvider

    provider = LlamaCppProvider(n_threads=1)
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def llama_server_url():
    """One real llama_cpp.server (bundled SmolLM2) on 127.0.0.1 for the whole session."""
    from llm_server import start_llama_server

    from ragline.llm.providers.llamacpp import bundled_gguf_path

    with start_llama_server(bundled_gguf_path()) as url:
        yield url


@pytest.fixture(scope="session")
def fault_proxies(llama_server_url):
    """Two fault-injecting proxies in front of the llama server: a chain's primary and backup,
    each on its own port so tests see which provider was asked what."""
    from fault_proxy import FaultProxy

    with FaultProxy(llama_server_url) as primary, FaultProxy(llama_server_url) as backup:
        yield primary, backup


@pytest.fixture
def primary(fault_proxies):
    fault_proxies[0].clear()
    return fault_proxies[0]


@pytest.fixture
def backup(fault_proxies):
    fault_proxies[1].clear()
    return fault_proxies[1]
