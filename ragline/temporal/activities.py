"""The activities of one store's worker, run in the process that owns the store.

An ingest attempt is the source runner's run (history record, source lock, the pipeline's
crash-safe order), with heartbeats from a thread of its own: the pipeline's batches can take
longer than a heartbeat timeout, the thread's beats do not wait for them. A beat that finds
the activity cancelled or the worker shutting down asks the run to stop at its next batch
boundary; the attempt then fails as interrupted, and the next attempt continues from there.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, get_args

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ragline.runs.history import Trigger
from ragline.runs.runner import SourceRunner, UnknownSourceError
from ragline.temporal.workflows import INGEST_ACTIVITY, OPTIMIZE_ACTIVITY, IngestRequest

if TYPE_CHECKING:
    from ragline.app import Rag

BEATS_PER_TIMEOUT = 4
STOP_POLL = 0.1  # seconds: how soon a run hears that its worker is shutting down


@contextmanager
def heartbeating(stop: threading.Event, every: float) -> Iterator[None]:
    """Heartbeat every `every` seconds while the block runs; set `stop` once the activity is
    cancelled or its worker is shutting down."""
    done = threading.Event()

    def beat() -> None:
        last = time.monotonic()
        while not done.wait(STOP_POLL):
            if activity.is_cancelled() or activity.is_worker_shutdown():
                stop.set()
            if time.monotonic() - last >= every:
                activity.heartbeat()
                last = time.monotonic()

    # The activity's context (what `activity.heartbeat` reports to) is a context variable.
    beater = threading.Thread(target=contextvars.copy_context().run, args=(beat,), name="ragline-heartbeat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        done.set()
        beater.join()


class StoreActivities:
    def __init__(self, rag: Rag, runner: SourceRunner):
        self.rag = rag
        self.runner = runner

    @activity.defn(name=INGEST_ACTIVITY)
    def ingest_source(self, request: IngestRequest) -> dict:
        if request.trigger not in get_args(Trigger):
            raise ApplicationError(f"unknown trigger {request.trigger!r}", type="BadRequest", non_retryable=True)
        stop = threading.Event()
        with heartbeating(stop, request.heartbeat_timeout_s / BEATS_PER_TIMEOUT):
            try:
                run, report = self.runner.ingest(request.source, request.trigger, stop=stop)  # type: ignore[arg-type]
            except UnknownSourceError as exc:
                raise ApplicationError(str(exc), type="UnknownSource", non_retryable=True) from None
        outcome = {"run": run.contract(), "chunks_embedded": report.chunks_embedded if report else 0}
        if run.status == "interrupted":
            raise ApplicationError(
                f"run {run.id} of {request.source!r} stopped at a batch boundary; the next attempt continues from "
                "its last committed batch", outcome, type="Interrupted",
            )  # fmt: skip
        if run.status == "failed":
            raise ApplicationError(f"run {run.id} of {request.source!r} failed: {'; '.join(run.errors) or 'no detail'}",
                                   outcome, type="RunFailed")  # fmt: skip
        return outcome

    @activity.defn(name=OPTIMIZE_ACTIVITY)
    def optimize_store(self) -> None:
        """Build the index after a run wrote to it: no heartbeats to starve (see the package)."""
        self.rag.optimize()
