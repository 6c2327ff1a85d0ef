"""`[temporal]`: where `ragline temporal worker` finds Temporal, and how hard runs are retried."""

from __future__ import annotations

import hashlib
import socket
from typing import TYPE_CHECKING

from pydantic import Field

from ragline.settings import Section

if TYPE_CHECKING:
    from ragline.config import RaglineConfig


class TemporalConfig(Section):
    enabled: bool = Field(
        False, description="`ragline serve` hosts the store's Temporal worker: Temporal's schedules run the sources "
        "instead of the server's own scheduler (watched folders still run on change).",
    )
    address: str = Field("127.0.0.1:7233", description="Temporal frontend, HOST:PORT.")
    namespace: str = "default"
    task_queue: str | None = Field(
        None, description="The store's task queue; default: derived from the store (its server and collection, or "
        "this machine and the store directory), so two stores never take each other's runs.",
    )
    heartbeat_timeout_s: float = Field(
        30, gt=0, description="A run whose worker is silent this long is retried on another attempt."
    )
    attempts: int = Field(
        3, ge=1, description="Attempts of one run before its workflow fails; a failed workflow pauses its schedule.",
    )
    retry_initial_s: float = Field(10, gt=0, description="Wait before the second attempt; doubles per attempt.")
    run_timeout_s: float = Field(6 * 3600, gt=0, description="Longest one attempt of an ingest may take.")
    optimize_timeout_s: float = Field(3600, gt=0, description="Longest the index build after a run may take.")


def task_queue(config: RaglineConfig) -> str:
    """The store's task queue: every activity that writes the store runs in the one worker
    that owns it, so an embedded store is only ever written by its own process."""
    if config.temporal.task_queue:
        return config.temporal.task_queue
    store = config.store
    identity = store.identity() if store.kind == "server" else f"{socket.gethostname()}:{store.identity()}"
    return "ragline-" + hashlib.sha256(identity.encode()).hexdigest()[:16]
