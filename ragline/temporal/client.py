"""Talking to Temporal from ragline: connecting with a clear error, and starting a run now."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from temporalio.client import Client

from ragline.errors import TemporalUnreachable
from ragline.temporal.config import task_queue
from ragline.temporal.schedules import ingest_request, workflow_id
from ragline.temporal.workflows import IngestWorkflow

if TYPE_CHECKING:
    from ragline.config import RaglineConfig

CONNECT_TIMEOUT = 10.0


async def connect(address: str, namespace: str) -> Client:
    try:
        return await asyncio.wait_for(Client.connect(address, namespace=namespace), CONNECT_TIMEOUT)
    except (RuntimeError, OSError, TimeoutError) as exc:
        raise TemporalUnreachable(
            f"cannot reach Temporal at {address} (namespace {namespace}): {exc or 'no answer'}. Start it "
            "(`temporal server start-dev`) or set [temporal] address / --address"
        ) from None


async def run_now(client: Client, config: RaglineConfig, source: str) -> dict:
    """Run `source` through the store's worker now and wait: the workflow's result (the run
    record under "run"). A run of a source already running is recorded `skipped`."""
    queue = task_queue(config)
    return await client.execute_workflow(
        IngestWorkflow.run, ingest_request(source, "manual", config.temporal),
        id=f"{workflow_id(queue, source)}:manual-{uuid.uuid4().hex[:12]}", task_queue=queue,
    )  # fmt: skip
