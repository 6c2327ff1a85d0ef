"""Runs configured `[[sources]]` by name, recording each run in the history.

Two runs of one source never overlap: a run holds its source's lock file for its whole
length (`ragline.runs.locks`), and a second request, from this process or another, is
recorded as `skipped` (reason `overlap`) instead. Runs of different sources queue for the
store, one ingest at a time: the pipeline's recovery step at the start of a run deletes the
points another run logged but has not committed yet. A queued run is `running` already.

The status comes from the report: `succeeded`, `partial` (some documents failed), `failed`
(nothing succeeded, or an exception: recorded, logged, and raised to synchronous callers),
`interrupted` (its stop event was set: it ended at a batch boundary).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragline.access.readers import SourceAccess
from ragline.connectors.base import Connector
from ragline.connectors.registry import path_connector, source_connector
from ragline.models import IngestError, IngestReport
from ragline.runs.history import FinalStatus, RunHistory, SourceRun, Trigger
from ragline.runs.locks import SourceLock
from ragline.runs.sources import named_sources

if TYPE_CHECKING:
    from ragline.app import Rag
    from ragline.ingest.config import SourceConfig

log = logging.getLogger(__name__)

STORE_WAIT_POLL = 0.1  # seconds between checks of a queued run's stop event
KEPT_REPORTS = 200  # full reports of the latest runs, for clients waiting on a run


class UnknownSourceError(KeyError):
    """A run was asked for a source the config does not have."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


@dataclass
class _Active:
    record: SourceRun
    lock: SourceLock
    stop: threading.Event
    connector: Connector | None = None  # an ad hoc run (paths given); None: the configured entry
    done: threading.Event = field(default_factory=threading.Event)


def run_status(report: IngestReport) -> FinalStatus:
    """A finished run's status from its report."""
    if report.interrupted:
        return "interrupted"
    if not report.failed:
        return "succeeded"
    worked = report.added + report.updated + report.unchanged + report.deleted
    return "partial" if worked else "failed"


class SourceRunner:
    """Runs configured [[sources]] by name, records each run, never two of one source at once."""

    def __init__(self, rag: Rag, history: RunHistory, *, optimize: bool = True):
        """`optimize=False`: runs leave the index build to the caller (`pending_optimize`)."""
        self.rag = rag
        self.history = history
        self._sources = named_sources(rag.config.sources)
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._store_free = threading.Lock()  # one ingest at a time in this store
        self._optimize = optimize
        self._unoptimized = threading.Event()
        self._reports: dict[str, IngestReport] = {}
        history.interrupt_stale()

    def names(self) -> list[str]:
        return list(self._sources)

    def source(self, name: str) -> SourceConfig:
        try:
            return self._sources[name]
        except KeyError:
            known = ", ".join(map(repr, self._sources)) or "none configured"
            raise UnknownSourceError(f"no [[sources]] entry named {name!r}; known: {known}") from None

    def running(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def run(self, source: str, trigger: Trigger, *, stop: threading.Event | None = None) -> SourceRun:
        """Run now, in this thread; a source already running gives a `skipped` run. A failing
        run is recorded `failed` and logged, not raised (`ingest` raises)."""
        claimed = self._claim(source, trigger, stop)
        return claimed if isinstance(claimed, SourceRun) else self._run_logged(claimed)

    def ingest(
        self,
        source: str,
        trigger: Trigger,
        *,
        stop: threading.Event | None = None,
        show_progress: bool = False,
        allow_mass_delete: bool | None = None,
    ) -> tuple[SourceRun, IngestReport | None]:
        """`run` for callers that want the full report (None when skipped) and exceptions
        raised (after they are recorded), as `ragline ingest` does."""
        claimed = self._claim(source, trigger, stop)
        if isinstance(claimed, SourceRun):
            return claimed, None
        return self._execute(claimed, show_progress=show_progress, allow_mass_delete=allow_mass_delete)

    def start(self, source: str, trigger: Trigger) -> SourceRun:
        """Run in a background thread; returns the `running` record (or `skipped`) at once."""
        claimed = self._claim(source, trigger, None)
        if isinstance(claimed, SourceRun):
            return claimed
        threading.Thread(target=self._run_logged, args=(claimed,), name=f"ragline run {source}", daemon=True).start()
        return claimed.record

    def start_paths(self, paths: list[Path], trigger: Trigger, readers: list[str] | None = None) -> list[SourceRun]:
        """Ad hoc runs of files or folders (each its own filesystem source, `readers` its
        default readers), in the background."""
        access = SourceAccess.of(readers) if readers is not None else None
        runs = []
        for path in paths:
            connector = path_connector(path, access)
            claimed = self._claim(connector.source, trigger, None, connector)
            if isinstance(claimed, _Active):
                threading.Thread(target=self._run_logged, args=(claimed,), name=f"ragline run {path}",
                                 daemon=True).start()  # fmt: skip
                claimed = claimed.record
            runs.append(claimed)
        return runs

    def report(self, run_id: str) -> IngestReport | None:
        """The full report of a recent run (the history keeps counts and short errors)."""
        with self._lock:
            return self._reports.get(run_id)

    def pending_optimize(self) -> bool:
        return self._unoptimized.is_set()

    def optimized(self) -> None:
        self._unoptimized.clear()

    def stop_all(self, timeout: float | None = None) -> None:
        """Ask every run to stop at its next batch boundary and wait for them (up to
        `timeout` seconds in all): they end `interrupted`, with what they wrote committed."""
        with self._lock:
            active = list(self._active.values())
        for run in active:
            run.stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in active:
            run.done.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # --- one run ---

    def _claim(self, source: str, trigger: Trigger, stop: threading.Event | None,
               connector: Connector | None = None) -> _Active | SourceRun:  # fmt: skip
        """The source's lock and a `running` record, or a `skipped` record when it is busy."""
        if connector is None:
            self.source(source)
        with self._lock:
            lock = None if source in self._active else SourceLock.try_take(self.rag.path, source)
            if lock is None:
                return self.history.skipped(source, trigger, "overlap")
            try:
                record = self.history.start(source, trigger)
            except BaseException:
                lock.release()
                raise
            claimed = self._active[source] = _Active(record, lock, stop or threading.Event(), connector)
        return claimed

    def _run_logged(self, run: _Active) -> SourceRun:
        try:
            return self._execute(run)[0]
        except Exception:
            log.exception("run %s of source %r failed", run.record.id, run.record.source)
            return self.history.get(run.record.id) or run.record

    def _execute(self, run: _Active, **options) -> tuple[SourceRun, IngestReport]:
        """Ingest, then record the outcome; the lock is released only after the record is final."""
        try:
            try:
                report = self._ingest(run, **options)
            except BaseException as exc:
                status: FinalStatus = "failed" if isinstance(exc, Exception) else "interrupted"
                self.history.finish(run.record.id, status, errors=[f"{type(exc).__name__}: {exc}"])
                raise
            with self._lock:
                self._reports[run.record.id] = report
                while len(self._reports) > KEPT_REPORTS:
                    self._reports.pop(next(iter(self._reports)))
            if report.chunks_embedded and not self._optimize:
                self._unoptimized.set()
            return self.history.finish(run.record.id, run_status(report), report), report
        finally:
            with self._lock:
                self._active.pop(run.record.source, None)
            run.lock.release()
            run.done.set()

    def _ingest(self, run: _Active, **options) -> IngestReport:
        while not self._store_free.acquire(timeout=STORE_WAIT_POLL):
            if run.stop.is_set():
                return IngestReport(interrupted=True)
        try:
            connector = run.connector
            if connector is None:
                connector = source_connector(self.source(run.record.source))
                if isinstance(connector, IngestError):  # as `Rag.ingest` reports a source it cannot set up
                    return IngestReport(failed=1, errors=[connector])
            return self.rag.ingest(connector, stop=run.stop, optimize=self._optimize, **options)
        finally:
            self._store_free.release()
