"""The store's Temporal worker inside `ragline serve` (`[temporal] enabled`): one process owns
an embedded store, answers queries, and runs the ingestions Temporal's schedules start.

The worker runs on a thread with an event loop of its own, through the server's source runner,
so a run started by Temporal and one started over the API never overlap for a source and take
the store in turn."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from ragline.temporal.client import CONNECT_TIMEOUT
from ragline.temporal.worker import run_worker

if TYPE_CHECKING:
    from ragline.app import Rag
    from ragline.runs.runner import SourceRunner

START_TIMEOUT = CONNECT_TIMEOUT + 30  # connect, then register the schedules


class HostedWorker:
    def __init__(self, rag: Rag, runner: SourceRunner):
        self.rag = rag
        self.runner = runner
        self.queue: str | None = None
        self.schedules: list[str] = []
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="ragline-temporal", daemon=True)

    def start(self) -> None:
        """Returns once the worker polls; raises what kept it from starting (`TemporalUnreachable`)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"the Temporal worker did not start within {START_TIMEOUT:.0f} s")
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await run_worker(self.rag, self._stop, runner=self.runner, on_ready=self._started)
        except BaseException as exc:  # noqa: BLE001 - reported to start(), or logged by the thread
            if self._ready.is_set():
                raise
            self._failure = exc
        finally:
            self._ready.set()

    def _started(self, queue: str, schedules: list[str]) -> None:
        self.queue, self.schedules = queue, schedules
        self._ready.set()

    def stop(self) -> None:
        """Stop polling; running attempts stop after their current batch (Temporal retries them)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join()
