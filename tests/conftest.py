"""Session-wide fixtures: real models are loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
EXAMPLE_DOCS = ROOT.parent / "shared" / "data" / "unstructured-example-docs"


@pytest.fixture(scope="session")
def example_docs() -> Path:
    if not EXAMPLE_DOCS.is_dir():
        pytest.skip(f"shared example docs not found at {EXAMPLE_DOCS}")
    return EXAMPLE_DOCS


@pytest.fixture(scope="session")
def embedder():
    from ragline.retrieval.embeddings import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def local_llm():
    from ragline.pipelines.providers.llamacpp import LlamaCppProvider

    provider = LlamaCppProvider(n_threads=1)
    yield provider
    provider.close()
