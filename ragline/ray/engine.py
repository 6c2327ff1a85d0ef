"""The Ray engine's parts for one store: the cluster connection, a parse pool per run,
and the embedding actors (`ragline.ray`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ragline.config import ConfigError
from ragline.ingest.config import IngestConfig
from ragline.ray.cluster import Cluster
from ragline.ray.config import RayConfig
from ragline.ray.embedding import RayEncoder
from ragline.ray.parsing import RayParsers
from ragline.retrieval.embeddings import Embedder, TextEmbedder

if TYPE_CHECKING:
    from ragline.retrieval.second_stage import SecondStageEncoder

log = logging.getLogger(__name__)

# Parse tasks in flight when the cluster's CPUs allow more: each costs a thread here.
MAX_PARSE_TASKS = 64


class RayEngine:
    def __init__(self, config: RayConfig, ingest: IngestConfig):
        self.config = config
        self.ingest = ingest
        self.cluster = Cluster(config)
        self._encoders: list[RayEncoder] = []
        self._check_fit()

    def _check_fit(self) -> None:
        """Refuse settings under which parse tasks could never be scheduled: Ray would queue
        them behind the actors for ever, and every document would time out."""
        spare = self._spare_cpus()
        if spare < self.config.parse_cpus:
            self.close()
            raise ConfigError(
                f"ray: {self.config.embed_actors} embedding actor(s) x {self.config.actor_cpus:g} CPU leave "
                f"{max(spare, 0):g} of the cluster's {self.cluster.cpus():g} CPUs, less than one parse task's "
                f"{self.config.parse_cpus:g} (ray.parse_cpus): lower ray.embed_actors or ray.actor_cpus, or add CPUs"
            )

    @property
    def parse_tasks(self) -> int:
        if self.config.parse_tasks is not None:
            return self.config.parse_tasks
        return max(1, min(MAX_PARSE_TASKS, int(self._spare_cpus() / self.config.parse_cpus)))

    def _spare_cpus(self) -> float:
        """The cluster's CPUs the embedding actors leave to parse tasks (asked each run: a cluster may grow)."""
        return self.cluster.cpus() - self.config.embed_actors * self.config.actor_cpus

    def parsers(self) -> RayParsers:
        """A run's parse pool (`ParseQueue` closes it when the run ends)."""
        return RayParsers(
            self.cluster.ray, self.parse_tasks, cpus=self.config.parse_cpus,
            max_bytes=self.ingest.max_document_bytes, timeout=self.ingest.parse_timeout_seconds,
        )  # fmt: skip

    def embedder(self, local: TextEmbedder) -> TextEmbedder:
        """What the ingestor embeds with: actors running `local`'s model, when it is a
        sentence-transformers `Embedder` (its settings travel); any other embedder (an
        HTTP endpoint, one passed to `ragline.open`) keeps embedding here."""
        if not isinstance(local, Embedder):
            log.info("ingest.engine = 'ray': %s embeds in this process; parsing runs on Ray", type(local).__name__)
            return local
        return self._on_actors(local)

    def second_stage(self, local: SecondStageEncoder | None) -> SecondStageEncoder | None:
        """The second-stage encoder's vectors, made on actors too (it is settings and a model folder)."""
        return None if local is None else self._on_actors(local)

    def _on_actors(self, local):
        encoder = RayEncoder(self.cluster.ray, local, self.config)
        self._encoders.append(encoder)
        return encoder

    def close(self) -> None:
        for encoder in self._encoders:
            encoder.close()
        self.cluster.close()
