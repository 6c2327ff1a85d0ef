"""The second stage paid for at ingest (`retrieval.rerank = "vectors"`), end to end on the
embedded store with the real models: every chunk gets its bge vector at ingest, a query
ranks the first stage's best hits by those vectors fused with their first-stage rank, and
a store created without them keeps the cross-encoder under the default (`auto`) and is
encoded on the spot under an explicit `vectors`; a store keeps the model that made its
vectors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import ragline
from ragline.config import ConfigError
from ragline.pipelines.steps import Rerank
from ragline.retrieval.fusion import rrf
from ragline.retrieval.rerank import OnnxCrossEncoder
from ragline.retrieval.second_stage import SecondStageEncoder, StoredVectorReranker

QUESTION = "How many days of paid leave do new employees get?"
DOCUMENTS = {
    "handbook.md": "# Handbook\n\nNew employees get 25 days of paid leave per year, from their first day.",
    "leave-policy.md": "# Leave\n\nPart-time staff accrue leave pro rata; unused days carry over to March.",
    "onboarding.md": "# Onboarding\n\nEvery new employee gets an onboarding buddy for the first 3 months.",
    "security.md": "# Security\n\nPasswords must be at least 14 characters long and rotated every 180 days.",
    "expenses.md": "# Expenses\n\nTravel is booked through the portal; receipts are due within 30 days.",
}
VECTORS = {"rerank": "vectors"}


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    return folder


def reranked(rag, top_k: int = 4):
    return rag.retrieve(QUESTION, top_k=top_k)


def test_each_chunk_is_stored_with_its_second_vector_and_ranks_by_it(tmp_path, corpus, embedder) -> None:
    encoder = SecondStageEncoder()
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval=VECTORS) as rag:
        report = rag.ingest(corpus)
        assert report.added == len(DOCUMENTS) and report.failed == 0
        store = rag.store
        assert store.second_dim == encoder.dim == 384
        points = list(store.iter_points())
        stored = store.second_vectors([p.id for p in points])
        assert stored.keys() == {p.id for p in points}
        hits = reranked(rag)
        first_stage = rag.retrieve(QUESTION, top_k=20, rerank=False)
    assert hits[0].document_id == "handbook.md"
    question = np.asarray(encoder.embed_query(QUESTION))
    rank_of = {hit.chunk_id: rank for rank, hit in enumerate(first_stage, start=1)}
    by_vector = sorted(first_stage, key=lambda h: -float(question @ np.asarray(stored[h.chunk_id])))
    vector_rank = {hit.chunk_id: rank for rank, hit in enumerate(by_vector, start=1)}
    for hit in hits:  # the stored vectors' score, fused with the first stage by the one RRF
        assert hit.metadata["rerank_score"] == pytest.approx(float(question @ np.asarray(stored[hit.chunk_id])), abs=1e-5)
        assert hit.score == pytest.approx(rrf(vector_rank[hit.chunk_id]) + rrf(rank_of[hit.chunk_id]))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # Unchanged documents stay unchanged; a store that holds second vectors keeps filling
    # them when the setting goes back to the cross-encoder.
    (corpus / "payroll.md").write_text("# Payroll\n\nSalaries are paid on the 25th of each month.")
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval={"rerank": "none"}) as rag:
        report = rag.ingest(corpus)
        assert (report.unchanged, report.added) == (len(DOCUMENTS), 1)
        ids = [p.id for p in rag.store.iter_points()]
        assert rag.store.second_vectors(ids).keys() == set(ids)


def test_a_store_created_without_second_vectors_keeps_the_cross_encoder_by_default(
    tmp_path, corpus, embedder, caplog
) -> None:
    """The upgrade path: under the default (`auto`) a store created without second vectors
    reranks as it did before (the cross-encoder over 20), retrieve and query alike; only an
    explicit `vectors` encodes its candidates per query, with the stored vectors' scores."""
    with ragline.open(tmp_path / "stored", embedder=embedder, retrieval=VECTORS) as rag:
        rag.ingest(corpus)
        expected = {h.chunk_id: h.metadata["rerank_score"] for h in reranked(rag)}
    with ragline.open(tmp_path / "plain", embedder=embedder, retrieval={"rerank": "none"}) as rag:
        rag.ingest(corpus)
    with ragline.open(tmp_path / "plain", embedder=embedder) as rag:
        assert rag.config.retrieval.rerank == "auto"
        assert isinstance(rag.reranker, OnnxCrossEncoder) and rag.components.retriever.settings.rerank_depth == 20
        rerank_step = next(step for step in rag.get_pipeline("default").steps if isinstance(step, Rerank))
        assert rerank_step.top_n == 20  # what `query` runs is what `retrieve` runs
        assert reranked(rag)[0].document_id == "handbook.md"
    with ragline.open(tmp_path / "plain", embedder=embedder, retrieval=VECTORS) as rag:
        with caplog.at_level(logging.WARNING, logger="ragline.retrieval.second_stage"):
            hits = reranked(rag)
        assert "no stored second-stage vector" in caplog.text and "Re-ingest into a new store" in caplog.text
        assert {h.chunk_id: h.metadata["rerank_score"] for h in hits} == pytest.approx(expected, abs=1e-4)
        # Ingest cannot add a vector to a collection created without one: nothing is re-embedded.
        report = rag.ingest(corpus)
        assert report.unchanged == len(DOCUMENTS) and rag.store.second_dim is None


def test_a_store_keeps_the_second_stage_model_it_was_created_with(tmp_path, corpus, embedder) -> None:
    """The model is recorded beside the vectors: a later `rerank` setting without a model
    keeps using it (nothing re-embedded), and a `rerank_model` naming another is refused."""
    bundled = SecondStageEncoder().model_dir
    custom = tmp_path / "my-bge"
    custom.symlink_to(bundled, target_is_directory=True)
    own = {"rerank": "vectors", "rerank_model": str(custom)}
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval=own) as rag:
        rag.ingest(corpus)
        assert rag.store.second_model == str(custom.absolute())
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval={"rerank": "onnx"}) as rag:
        assert rag.components.second_stage.model_dir == custom.absolute()
        assert rag.ingest(corpus).unchanged == len(DOCUMENTS)
    with ragline.open(tmp_path / "store", embedder=embedder) as rag:
        assert isinstance(rag.reranker, StoredVectorReranker) and rag.reranker.name == "stored-vectors:my-bge"
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval={**own, "rerank_model": str(bundled)}) as rag:
        with pytest.raises(ConfigError, match="rerank_model.*leave rerank_model unset"):
            rag.retrieve(QUESTION)


def test_the_eval_reads_source_support_with_a_cross_encoder_whatever_the_second_stage(tmp_path, embedder) -> None:
    """`source_support` is a sigmoid of a cross-encoder's logit: stored vectors' cosines
    would put every answer near 0.6, so the eval keeps a cross-encoder of its own."""
    from ragline.retrieval.rerank import OnnxCrossEncoder
    from ragline.retrieval.second_stage import StoredVectorReranker

    with ragline.open(tmp_path / "vectors", embedder=embedder) as rag:
        assert isinstance(rag.reranker, StoredVectorReranker)
        assert isinstance(rag.components.cross_encoder, OnnxCrossEncoder)
    with ragline.open(tmp_path / "onnx", embedder=embedder, retrieval={"rerank": "onnx"}) as rag:
        assert rag.components.cross_encoder is rag.reranker
    with ragline.open(tmp_path / "none", embedder=embedder, retrieval={"rerank": "none"}) as rag:
        assert rag.components.cross_encoder is None
