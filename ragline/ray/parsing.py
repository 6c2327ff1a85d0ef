"""Parsing on Ray: each changed file is one Ray task, at most `workers` in flight.

`ParseQueue` uses this in place of its parser processes. As there, a parse that crashes
its worker or outlasts `ingest.parse_timeout_seconds` costs that document alone (its task
is cancelled) and the document is retried next run. Tasks are handed out only as fast as
they can run, so each one's timeout counts its parsing, not a wait in Ray's queue.
"""

from __future__ import annotations

import threading

from ragline.connectors.base import SourceItem
from ragline.failpoints import failpoint
from ragline.ingest.loading import ParseOutcome, parse_item
from ragline.ingest.parser_pool import ParserPool
from ragline.ray.cluster import first_line


def parse_remotely(item: SourceItem, max_bytes: int) -> ParseOutcome:
    """The task: what a parser process does with one document."""
    failpoint("parse.worker")
    return parse_item(item, max_bytes=max_bytes)


class RayParsers(ParserPool):
    def __init__(self, ray, workers: int, *, cpus: float, max_bytes: int, timeout: float):
        super().__init__(workers, max_bytes=max_bytes, timeout=timeout)
        self.ray = ray
        self._task = ray.remote(num_cpus=cpus, max_retries=0)(parse_remotely)
        self._running: set = set()
        self._lock = threading.Lock()

    def _parse(self, slot: None, item: SourceItem) -> ParseOutcome:
        ray = self.ray
        ref = self._task.remote(item, self.max_bytes)
        with self._lock:
            self._running.add(ref)
        try:
            return ray.get(ref, timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            return ParseOutcome(reason=f"parsing took longer than {self.timeout:g} s (ingest.parse_timeout_seconds); "
                                       "the Ray task was cancelled; it is retried next run")  # fmt: skip
        except ray.exceptions.RayError as exc:  # the worker died, the task was cancelled, the node was lost
            return ParseOutcome(reason=f"the Ray parse task failed ({first_line(exc)}); it is retried next run")
        finally:
            with self._lock:
                self._running.discard(ref)

    def _interrupt(self) -> None:
        with self._lock:
            for ref in list(self._running):
                self.ray.cancel(ref, force=True)
