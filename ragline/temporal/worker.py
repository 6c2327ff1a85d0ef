"""`ragline temporal worker`: own the store, keep its schedules in Temporal, run its workflows.

Shutdown (SIGTERM, SIGINT): the worker stops polling and gives running attempts until
`SHUTDOWN_GRACE` to end; their heartbeat threads see the shutdown and stop the runs at their
next batch boundary (committed, `interrupted`), and Temporal gives the runs to the next worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ragline.runs.history import RunHistory
from ragline.runs.runner import SourceRunner
from ragline.state.url import shared_state_url
from ragline.temporal.activities import StoreActivities
from ragline.temporal.client import connect
from ragline.temporal.config import task_queue
from ragline.temporal.schedules import sync_schedules
from ragline.temporal.workflows import IngestWorkflow

if TYPE_CHECKING:
    from ragline.app import Rag

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = timedelta(seconds=60)
ACTIVITY_THREADS = 4  # runs of different sources queue for the store inside the runner


@contextmanager
def store_worker(client: Client, rag: Rag, queue: str, runner: SourceRunner | None = None) -> Iterator[Worker]:
    """A worker for the store's task queue, its activities running in the store's process
    through its `SourceRunner` (run history, source locks, one ingest at a time); `runner`:
    the process's own (`ragline serve`), else one is made."""
    if runner is None:
        runner = SourceRunner(rag, RunHistory(rag.path, url=shared_state_url(rag.config)), optimize=False)
    activities = StoreActivities(rag, runner)
    # Workflow code is replayed in a sandbox; ragline's modules are deterministic to import, so
    # they are shared with it instead of re-imported for every workflow.
    sandbox = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("ragline"))
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="ragline-activity") as threads:
        yield Worker(
            client, task_queue=queue, workflows=[IngestWorkflow], workflow_runner=sandbox,
            activities=[activities.ingest_source, activities.optimize_store], activity_executor=threads,
            max_concurrent_activities=ACTIVITY_THREADS, graceful_shutdown_timeout=SHUTDOWN_GRACE,
        )  # fmt: skip


async def run_worker(rag: Rag, stop: asyncio.Event, *, address: str | None = None, namespace: str | None = None,
                     runner: SourceRunner | None = None,
                     on_ready: Callable[[str, list[str]], None] | None = None) -> None:  # fmt: skip
    """Serve the store's task queue until `stop` is set; `on_ready` gets the queue and the
    registered schedule ids once the worker polls."""
    settings = rag.config.temporal
    client = await connect(address or settings.address, namespace or settings.namespace)
    queue = task_queue(rag.config)
    rag.store  # noqa: B018 - takes the store's ownership lock before anything runs
    scheduled = await sync_schedules(client, rag.config.sources, settings, queue)
    with store_worker(client, rag, queue, runner) as worker:
        async with worker:
            log.info("temporal worker on task queue %s, %d schedules", queue, len(scheduled))
            if on_ready is not None:
                on_ready(queue, scheduled)
            await stop.wait()
            log.info("shutting down: running attempts stop after their current batch")
