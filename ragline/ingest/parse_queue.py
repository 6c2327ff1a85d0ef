"""Changed documents parsed in listing order, here or in parser processes, ahead of the
model: while the ingesting process embeds one window, the workers parse the next.

A run parses in its own process first: a handful of small files would wait longer for a
worker to start than for their own parsing. Once parsing files has taken
`parse_processes_after_seconds`, the rest go to `parse_workers` processes. Items that
carry plain text (dataset records, SQL rows) have nothing to parse and always stay here.
A run given its own parser pool (the Ray engine's tasks) sends it every file from the first.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from enum import Enum
from typing import Generic, TypeVar

from ragline.connectors.base import SourceItem
from ragline.ingest.config import IngestConfig
from ragline.ingest.loading import ParseOutcome, parse_item
from ragline.ingest.parser_pool import ParserPool
from ragline.ingest.parser_processes import ParserProcesses, default_workers

Context = TypeVar("Context")

# Documents handed to the workers and not yet taken, per worker: enough to keep them busy
# through an embedding window of small documents; parsed documents wait here in memory.
AHEAD_PER_WORKER = 8


class Waiting(Enum):
    """Marks where listing is about to wait for a parser process."""

    WAITING = "waiting"


WAITING = Waiting.WAITING


class ParseQueue(Generic[Context]):
    """`put` documents as they are listed, `take` their outcomes in the same order."""

    def __init__(self, config: IngestConfig, parsers: Callable[[], ParserPool] | None = None):
        self.config = config
        self._here_first = config.parse_processes_after_seconds if parsers is None else 0.0
        if parsers is None:
            workers = default_workers() if config.parse_workers is None else config.parse_workers
            self._parsers: ParserPool | None = (
                ParserProcesses(workers, max_bytes=config.max_document_bytes, timeout=config.parse_timeout_seconds)
                if workers else None
            )  # fmt: skip
        else:
            self._parsers = parsers()
        self._limit = AHEAD_PER_WORKER * max(self._parsers.workers if self._parsers else 0, 1)
        self._pending: deque[tuple[SourceItem, Context, Future[ParseOutcome]]] = deque()
        self._seconds_here = 0.0

    @property
    def using_processes(self) -> bool:
        return self._parsers is not None and self._seconds_here >= self._here_first

    def put(self, item: SourceItem, context: Context) -> None:
        if item.text is None and self.using_processes:
            future = self._parsers.submit(item)
        else:
            future = Future()
            started = time.perf_counter()
            future.set_result(parse_item(item, max_bytes=self.config.max_document_bytes))
            if item.text is None:
                self._seconds_here += time.perf_counter() - started
        self._pending.append((item, context, future))

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def ready(self) -> bool:
        """Whether `take` would return without waiting."""
        return bool(self._pending) and self._pending[0][2].done()

    @property
    def full(self) -> bool:
        """Whether listing should wait for outcomes before handing the workers more."""
        return len(self._pending) >= self._limit

    def take(self) -> tuple[SourceItem, Context, ParseOutcome]:
        """The oldest document's outcome, waiting for its parser when needed."""
        item, context, future = self._pending.popleft()
        return item, context, future.result()

    def close(self, *, now: bool = False) -> None:
        """Stop the workers; `now` drops what is queued (a stopped or failed run)."""
        self._pending.clear()
        if self._parsers is not None:
            self._parsers.close(now=now)
