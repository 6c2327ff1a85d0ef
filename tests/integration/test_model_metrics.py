"""Model-based answer metrics with the real bundled embedder and cross-encoder: an answer
close to its reference scores higher than an unrelated one, a sentence its cited chunk
supports scores higher than an off-topic one; nothing to compare with is undefined."""

from __future__ import annotations

import pytest

from ragline.eval.datasets import EvalItem
from ragline.eval.model_metrics import ModelJudges
from ragline.models import Answer, Citation
from ragline.retrieval.rerank import OnnxCrossEncoder


@pytest.fixture(scope="module")
def judges(embedder):
    return ModelJudges(embedder=embedder, reranker=OnnxCrossEncoder())


def _answer(text: str, chunk: str | None) -> Answer:
    citations = [Citation(n=1, document_id="d", chunk_id="c", text=chunk)] if chunk else []
    return Answer(text=text, citations=citations, sources=citations, model="m", trace_id="t")


def test_answer_similarity_orders_close_and_unrelated_answers(judges):
    item = EvalItem(id="1", question="q", reference_answer="New employees get 25 days of paid leave per year.")
    close = judges.score("answer_similarity", item, _answer("Employees receive 25 paid leave days a year.", None))
    unrelated = judges.score("answer_similarity", item, _answer("Hedgehogs hibernate in leaf nests.", None))
    assert close.ok and unrelated.ok and close.value > unrelated.value + 0.2
    assert judges.score("answer_similarity", item.model_copy(update={"reference_answer": None}),
                        _answer("x", None)).status == "undefined"  # fmt: skip


def test_source_support_orders_supported_and_off_topic_sentences(judges):
    chunk = "The handbook grants every new employee 25 days of paid leave in their first year."
    item = EvalItem(id="1", question="q")
    supported = judges.score("source_support", item, _answer("New employees get 25 days of paid leave [1].", chunk))
    off_topic = judges.score("source_support", item, _answer("The canteen serves soup on Fridays [1].", chunk))
    assert supported.ok and off_topic.ok and supported.value > off_topic.value
    assert 0.0 <= off_topic.value <= supported.value <= 1.0
    assert judges.score("source_support", item, _answer("No citation here.", None)).status == "undefined"
