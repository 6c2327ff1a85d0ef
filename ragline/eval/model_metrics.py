"""Metrics that read with local models, loaded once per run:

- `answer_similarity`: cosine similarity of the answer and the reference answer with the
  configured embedder, clipped to [0, 1] (opposite meanings do not score below unrelated).
- `source_support`: for each answer sentence, how relevant the bundled cross-encoder finds
  its best cited chunk (the logit through a sigmoid), averaged over sentences. It measures
  relevance support, not entailment: a sentence that contradicts its source on-topic still
  scores high. An NLI model would measure entailment; none ships on PyPI with its weights.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ragline.eval.datasets import EvalItem
from ragline.eval.scores import Score
from ragline.models import Answer
from ragline.retrieval.embeddings import TextEmbedder
from ragline.retrieval.rerank import Reranker

MODEL_METRICS = ("answer_similarity", "source_support")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKERS = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


@dataclass
class ModelJudges:
    """The models these metrics read with; items are scored from worker threads, and the
    models are not thread-safe, so one lock serialises their use."""

    embedder: TextEmbedder | None
    reranker: Reranker | None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def score(self, name: str, item: EvalItem, answer: Answer) -> Score:
        with self._lock:
            if name == "answer_similarity":
                return self.answer_similarity(answer.text, item.reference_answer)
            return self.source_support(answer)

    def answer_similarity(self, answer: str, reference: str | None) -> Score:
        if not reference or not reference.strip():
            return Score.undefined("no reference answer")
        if not answer.strip():
            return Score.of(0.0)
        if self.embedder is None:
            return Score.error("no embedder")
        first, second = (np.asarray(v, dtype=np.float64) for v in self.embedder.embed([answer, reference]))
        norms = float(np.linalg.norm(first) * np.linalg.norm(second))
        return Score.of(min(1.0, max(0.0, float(first @ second) / norms))) if norms else Score.of(0.0)

    def source_support(self, answer: Answer) -> Score:
        cited = {citation.n: citation.text for citation in answer.citations}
        if not cited:
            return Score.undefined("the answer cites nothing")
        if self.reranker is None:
            return Score.error("no reranker: set retrieval.rerank to measure source support")
        sentences = [_MARKERS.sub("", s).strip() for s in _SENTENCE_END.split(answer.text)]
        sentences = [s for s in sentences if s]
        if not sentences:
            return Score.undefined("the answer has no sentence")
        passages: Sequence[str] = list(cited.values())
        best = [max(self.reranker.scores(sentence, passages)) for sentence in sentences]
        return Score.of(sum(1.0 / (1.0 + math.exp(-logit)) for logit in best) / len(best))
