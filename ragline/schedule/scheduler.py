"""Fires configured sources on their schedules, through the source runner.

A daemon thread checks every `tick_seconds` which sources are due and starts their runs in
the background (`SourceRunner.start`): a due source that is still running gets a `skipped`
run (overlap), never a second run. After a tick, the next fire time is computed from now,
so ticks missed while the process was suspended coalesce into the one run that fires.

On start, a source whose schedule ticked since its last run (while no scheduler ran), within
`catch_up_seconds`, gets one run with trigger `catch-up`, not one per missed tick.

Filesystem sources with `watch = true` also run when their folder changes: changes are
debounced, and changes during a run give one more run after it (a run in progress may have
listed the changed file already).

Replicas sharing a store (`[shared_state]`) each run a scheduler, and a lease in the shared
database picks the one that fires: the others keep their plans in step without firing, and
one takes over when the holder stops (it lets go) or vanishes (its lease expires), and
catches up on a tick the holder missed (the run history is shared too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ragline.errors import SharedStateError
from ragline.ingest.config import SourceConfig
from ragline.runs.history import RunHistory
from ragline.runs.sources import named_sources
from ragline.schedule.cron import Schedule, missed_tick, schedule_of

if TYPE_CHECKING:
    from ragline.runs.runner import SourceRunner
    from ragline.state.leases import Lease

log = logging.getLogger(__name__)

WATCH_QUIET_MS = 1000  # a burst of changes makes one run once the folder is quiet this long
WATCH_MAX_WAIT_MS = 10_000  # ... or this long after its first change, if it never gets quiet
WATCH_POLL_MS = 500  # how often an idle watcher looks whether a run it owes can start
JOIN_SECONDS = 5.0


@dataclass
class _Plan:
    schedule: Schedule
    next_run: float
    catch_up: bool


def _iso(instant: float | None, timezone: str) -> str | None:
    if instant is None:
        return None
    return datetime.fromtimestamp(instant, ZoneInfo(timezone)).isoformat(timespec="seconds")


def schedule_row(name: str, entry: SourceConfig, next_run: float | None, history: RunHistory | None) -> dict[str, Any]:
    """One source's line of `ragline schedule list --json` (and the server's schedules)."""
    schedule = schedule_of(entry)
    last = history.last(name) if history is not None else None
    return {
        "source": name,
        "schedule": schedule.describe() if schedule else "on change",
        "timezone": entry.timezone,
        "next_run": _iso(next_run, entry.timezone),
        "last_run_status": last.status if last else None,
    }


def schedule_rows(sources: list[SourceConfig], history: RunHistory | None, now: float) -> list[dict[str, Any]]:
    """Every scheduled or watched source's row, without a scheduler (`ragline schedule list`)."""
    rows = []
    for name, entry in named_sources(sources).items():
        schedule = schedule_of(entry)
        if schedule is not None or entry.watch:
            rows.append(schedule_row(name, entry, schedule.next_after(now) if schedule else None, history))
    return rows


class Scheduler:
    def __init__(
        self, runner: SourceRunner, sources: list[SourceConfig], history: RunHistory, *,
        clock: Callable[[], float] = time.time, tick_seconds: float = 0.5, lease: Lease | None = None,
    ):  # fmt: skip
        self.runner = runner
        self.lease = lease
        self.history = history
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._sources = named_sources(sources)
        self._lock = threading.Lock()  # plans: the tick thread advances them, schedules() reads them
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._led = False  # whether the last tick held the lease
        now = clock()
        self._plans: dict[str, _Plan] = {}
        for name, entry in self._sources.items():
            if (schedule := schedule_of(entry)) is not None:
                self._plans[name] = _Plan(schedule, schedule.next_after(now), self._missed(name, schedule, now))

    def _missed(self, name: str, schedule: Schedule, now: float) -> bool:
        """Whether the source's schedule ticked since its last run, within its catch-up window."""
        last = self.history.last(name)
        started = last.started.timestamp() if last else None
        return missed_tick(schedule, started, now, self._sources[name].catch_up_seconds)

    def due(self, now: float) -> list[tuple[str, str]]:
        """(source, trigger) of each source that fires at `now`; changes nothing."""
        with self._lock:
            return [
                (name, "catch-up" if plan.catch_up else "cron")
                for name, plan in self._plans.items() if plan.catch_up or plan.next_run <= now
            ]  # fmt: skip

    def tick(self, now: float | None = None) -> list[tuple[str, str]]:
        """Start the runs due at `now` (default: the clock) and plan each one's next fire."""
        now = self.clock() if now is None else now
        leading = self.leading()
        if leading and not self._led and self.lease is not None:  # taking over: what the last holder missed
            missed = {name: self._missed(name, plan.schedule, now) for name, plan in self._plans.items()}
            with self._lock:
                for name, plan in self._plans.items():
                    plan.catch_up = plan.catch_up or missed[name]
        self._led = leading
        due = self.due(now)
        for name, trigger in due:
            with self._lock:  # a replica that does not lead keeps in step with the one that fires
                plan = self._plans[name]
                plan.catch_up, plan.next_run = False, plan.schedule.next_after(now)
            if not leading:
                continue
            try:
                self.runner.start(name, trigger)
            except Exception:
                log.exception("could not start a %s run of source %r", trigger, name)
        return due if leading else []

    @property
    def firing(self) -> bool:
        """Whether the last tick fired (or would have): without a lease always; with one, while
        this replica held it. Asks nothing of the database."""
        return self.lease is None or self._led

    def leading(self) -> bool:
        """Whether this scheduler fires: always without a lease; with one, while it holds it
        (an unreachable database: not, and nobody else can take it either)."""
        if self.lease is None:
            return True
        try:
            return self.lease.hold()
        except SharedStateError as exc:
            log.warning("not firing schedules: %s", exc)
            return False

    def schedules(self) -> list[dict[str, Any]]:
        """Each scheduled or watched source: {"source", "schedule", "timezone", "next_run",
        "last_run_status"}, next_run in the source's time zone (ISO 8601)."""
        now = self.clock()
        with self._lock:
            next_runs = {name: now if plan.catch_up else plan.next_run for name, plan in self._plans.items()}
        return [
            schedule_row(name, entry, next_runs.get(name), self.history)
            for name, entry in self._sources.items() if name in next_runs or entry.watch
        ]  # fmt: skip

    def start(self) -> None:
        """Fire schedules from a daemon thread, and watch the watched folders."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._loop, name="ragline scheduler", daemon=True)]
        for name, entry in self._sources.items():
            root = entry.connector_settings().get("root") if entry.watch else None
            if root:
                watcher = threading.Thread(
                    target=self._watch, args=(name, Path(root).expanduser()), name=f"ragline watch {name}", daemon=True
                )
                self._threads.append(watcher)
        for thread in self._threads:
            thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop firing and watching; runs in progress go on (`SourceRunner.stop_all` ends them).
        `wait=False` only signals (safe in a signal handler); a later `stop()` joins."""
        self._stop.set()
        if not wait:
            return
        for thread in self._threads:
            thread.join(JOIN_SECONDS)
        self._threads = []
        if self.lease is not None:
            try:
                self.lease.release()
            except SharedStateError as exc:  # it expires on its own
                log.warning("could not let go of the scheduler lease: %s", exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad tick (e.g. the history unreadable) must not end the schedules
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_seconds)

    def _watch(self, name: str, root: Path) -> None:
        from watchfiles import DefaultFilter, watch

        store = self.history.path.parent.resolve()  # the store may live inside the folder
        owed = False
        try:
            for changes in watch(
                root, watch_filter=DefaultFilter(ignore_paths=[store]), stop_event=self._stop,
                step=WATCH_QUIET_MS, debounce=WATCH_MAX_WAIT_MS, rust_timeout=WATCH_POLL_MS, yield_on_timeout=True,
            ):  # fmt: skip
                owed = (owed or bool(changes)) and self.leading()  # the leader's watcher runs it
                if owed and name not in self.runner.running():
                    owed = self.runner.start(name, "watch").status == "skipped"
        except Exception:
            log.exception("watching %s for source %r stopped", root, name)
