"""What `ParseQueue` hands files to: `workers` threads, each parsing one document at a
time somewhere else (a parser process, a Ray task), each answer a `ParseOutcome`."""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any

from ragline.connectors.base import SourceItem
from ragline.ingest.loading import ParseOutcome


class ParserPool(ABC):
    """`submit` a document, get a future of its outcome; `close` ends the threads."""

    def __init__(self, workers: int, *, max_bytes: int, timeout: float):
        self.workers = workers
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._jobs: queue.Queue[tuple[SourceItem, Future] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    @abstractmethod
    def _parse(self, slot: Any, item: SourceItem) -> ParseOutcome:
        """One document's outcome, whatever happens to the parser; `slot` is the thread's own state."""

    @abstractmethod
    def _interrupt(self) -> None:
        """Stop what is being parsed now (a stopped or failed run)."""

    def _open_slot(self) -> Any:
        """A thread's own state, e.g. the process it talks to."""
        return None

    def _close_slot(self, slot: Any) -> None:  # noqa: B027 - an optional hook
        """Release a thread's state once its queue ends."""

    def submit(self, item: SourceItem) -> Future[ParseOutcome]:
        if not self._threads:
            for n in range(self.workers):
                thread = threading.Thread(target=self._serve, name=f"ragline-parser-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)
        future: Future[ParseOutcome] = Future()
        self._jobs.put((item, future))
        return future

    def _serve(self) -> None:
        slot = self._open_slot()
        try:
            while (job := self._jobs.get()) is not None:
                item, future = job
                if future.set_running_or_notify_cancel():
                    future.set_result(self._parse(slot, item))
        finally:
            self._close_slot(slot)

    def close(self, *, now: bool = False) -> None:
        """Stop the threads: after the queued documents, or `now` (queued ones are
        cancelled, running ones interrupted: their documents are read again next run)."""
        if now:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[1].cancel()
            self._interrupt()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
