"""The ONNX query path: exported once per model, the same vectors as torch, reused by later
processes without loading torch's model, repaired when damaged, and skipped for models it
cannot reproduce."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ragline.retrieval import onnx_query
from ragline.retrieval.config import EmbeddingConfig
from ragline.retrieval.embeddings import Embedder, bundled_model_path

QUERIES = ["What causes scurvy?", "Does vitamin D supplementation reduce fractures in older adults?",
           "CRISPR " * 400]  # the last one is truncated at the model's 256 word pieces


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ragline-cache")


@pytest.fixture
def use_cache(cache, monkeypatch):
    monkeypatch.setenv("RAGLINE_CACHE_DIR", str(cache))
    return cache


def export_folder(cache) -> object:
    return cache / "query-encoders" / onnx_query.export_key(str(bundled_model_path()))


def test_onnx_query_vectors_match_sentence_transformers(use_cache, embedder):
    fresh = Embedder()
    got = np.asarray([fresh.embed_query(q) for q in QUERIES])
    want = np.asarray(embedder.embed(QUERIES))
    assert isinstance(fresh._query_encoder, onnx_query.OnnxQueryEncoder)
    assert np.abs(got - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert sorted(p.name for p in export_folder(use_cache).iterdir()) == ["model.onnx", "spec.json", "tokenizer.json"]


def test_a_later_process_reuses_the_export_without_loading_the_torch_model(use_cache, embedder):
    Embedder().embed_query("warm the export")  # a no-op when the previous test exported already
    later = Embedder()
    vector = later.embed_query(QUERIES[0])
    assert "_model" not in later.__dict__  # sentence-transformers was never loaded
    assert np.abs(np.asarray(vector) - np.asarray(embedder.embed(QUERIES[:1])[0])).max() < 1e-5


def test_a_damaged_export_is_exported_again(use_cache, embedder, caplog):
    Embedder().embed_query("warm the export")
    folder = export_folder(use_cache)
    (folder / "model.onnx").write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING, logger="ragline.retrieval.embeddings"):
        repaired = Embedder()
        vector = repaired.embed_query(QUERIES[1])
    assert "exporting it again" in caplog.text
    assert isinstance(repaired._query_encoder, onnx_query.OnnxQueryEncoder)
    assert (folder / "model.onnx").stat().st_size > 1_000_000
    assert np.abs(np.asarray(vector) - np.asarray(embedder.embed(QUERIES[1:2])[0])).max() < 1e-5


def test_query_backend_torch_never_exports(tmp_path, monkeypatch, embedder):
    monkeypatch.setenv("RAGLINE_CACHE_DIR", str(tmp_path))
    on_torch = Embedder(EmbeddingConfig(query_backend="torch"))
    on_torch.__dict__["_model"] = embedder._model  # share the session's loaded model
    assert on_torch.embed_query(QUERIES[0]) == pytest.approx(embedder.embed(QUERIES[:1])[0], abs=1e-6)
    assert on_torch._query_encoder is None
    assert not (tmp_path / "query-encoders").exists()


def test_a_model_the_onnx_path_cannot_reproduce_stays_on_torch(tmp_path, monkeypatch, caplog):
    """Max pooling is not one the exported graph implements: queries must use torch, with
    the same vectors as documents."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    base = SentenceTransformer(str(bundled_model_path()), device="cpu")
    model = SentenceTransformer(modules=[base[0], Pooling(384, pooling_mode="max")], device="cpu")
    model.save(str(tmp_path / "max-pooled"))
    monkeypatch.setenv("RAGLINE_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="ragline.retrieval.embeddings"):
        custom = Embedder(EmbeddingConfig(model=str(tmp_path / "max-pooled")))
        vector = custom.embed_query(QUERIES[0])
    assert custom._query_encoder is None
    assert "queries stay on torch" in caplog.text and "pooling" in caplog.text
    assert vector == pytest.approx(custom.embed(QUERIES[:1])[0], abs=1e-6)
    assert not list((tmp_path / "cache").rglob("model.onnx"))  # the rejected export was not kept


def test_a_hub_model_is_keyed_by_the_snapshot_its_name_resolves_to(tmp_path, monkeypatch):
    """A model named by hub id gets a new export when the cached snapshot it resolves to
    changes (an updated model must not be served by the old export)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--acme--encoder"

    def publish(commit: str, weights: bytes) -> None:
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "model.safetensors").write_bytes(weights)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    assert onnx_query.export_key("acme/encoder") == onnx_query.export_key("acme/encoder")  # not cached: the name
    uncached = onnx_query.export_key("acme/encoder")
    publish("a" * 40, b"v1")
    first = onnx_query.export_key("acme/encoder")
    publish("b" * 40, b"v2 weights")
    assert len({uncached, first, onnx_query.export_key("acme/encoder")}) == 3
