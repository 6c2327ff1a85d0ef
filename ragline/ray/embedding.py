"""Embedding on Ray: a pool of actors that load a model once and keep it for the run.

`RayEncoder` stands in for one of the ingestor's encoders (the dense `Embedder`, the
second-stage encoder): everything but `embed` is the local encoder's own (model id,
fingerprint, what the store records), so the ledger sees no change of model and the
embedding cache is shared with the local engine. `embed` sends the texts to the actors in
shards, which run the local encoder's `embed` on them. Queries never come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ragline.errors import EngineFailed
from ragline.ray.cluster import first_line
from ragline.ray.config import RayConfig
from ragline.retrieval.embeddings import Embedder


class EmbedActor:
    """Holds one encoder, with as many torch threads as CPUs reserved for it (at least one)."""

    def __init__(self, encoder: Any, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.encoder = encoder

    def dim(self) -> int:
        return self.encoder.dim

    def embed(self, texts: list[str]):
        import numpy as np

        return np.asarray(self.encoder.embed(texts), dtype=np.float32)  # float32, as the models make them


class RayEncoder:
    def __init__(self, ray, local: Any, config: RayConfig):
        self.ray = ray
        self.local = local
        self.config = config
        # What travels to the actors: settings, never a model loaded here.
        self._blueprint = Embedder(local.config) if isinstance(local, Embedder) else local
        self._actors: list = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def _pool(self) -> list:
        if not self._actors:
            actor = self.ray.remote(num_cpus=self.config.actor_cpus, max_restarts=0)(EmbedActor)
            threads = max(1, round(self.config.actor_cpus))
            self._actors = [actor.remote(self._blueprint, threads) for _ in range(self.config.embed_actors)]
        return self._actors

    @cached_property
    def dim(self) -> int:
        """Asked of an actor, which loads the model there (not here)."""
        return self._results([self._pool()[0].dim.remote()], f"loading {self.local.model_id}")[0]

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> list[list[float]]:
        """Vectors in the order of `texts`; shards of `shard_texts` go round the actors."""
        size = self.config.shard_texts
        actors = self._pool()
        refs = [actors[n % len(actors)].embed.remote(list(texts[start:start + size]))
                for n, start in enumerate(range(0, len(texts), size))]  # fmt: skip
        vectors: list[list[float]] = []
        for shard in self._results(refs, f"embedding {len(texts)} texts with {self.local.model_id}"):
            vectors.extend(shard.tolist())
        return vectors

    def _results(self, refs: list, doing: str) -> list:
        """Each ref's value in order; a shard that does not finish within embed_timeout_s
        of the last one, or an actor that dies, fails the run (`EngineFailed`)."""
        ray, timeout = self.ray, self.config.embed_timeout_s
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
                if not done:
                    self.close()  # a stuck actor is not reused
                    raise EngineFailed(
                        f"{doing} on Ray: no shard finished within {timeout:g} s (ray.embed_timeout_s); the batches "
                        "written so far are kept: run the ingest again (or raise ray.embed_timeout_s)"
                    )
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            self.close()  # a dead actor is not reused
            raise EngineFailed(f"{doing} on Ray failed ({first_line(exc)}); the batches written so far are kept: "
                               "run the ingest again") from None  # fmt: skip

    def close(self) -> None:
        """Stop the actors (the next call starts new ones)."""
        for actor in self._actors:
            self.ray.kill(actor)
        self._actors = []
        self.__dict__.pop("dim", None)
