"""Run history: `runs.sqlite` in the store directory, one row per run of a source.

A run is recorded `running` when it starts (with the pid of its process) and gets its final
status when it ends. A process killed mid-run (kill -9, power loss) cannot record that, so
`interrupt_stale` closes runs whose process is gone; the ingest pipeline's crash-safe order
makes the next run of the source converge to a clean ingest.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field

from ragline.ingest.sqlite import connect, serialised
from ragline.models import IngestReport
from ragline.processes import process_alive

RUNS_FILE = "runs.sqlite"
MAX_ERRORS = 20  # per run; the ledger's last report keeps every error of the source's last run
MAX_ERROR_CHARS = 300

Trigger = Literal["cron", "watch", "manual", "api", "catch-up"]
Status = Literal["running", "succeeded", "partial", "failed", "interrupted", "skipped"]
FinalStatus = Literal["succeeded", "partial", "failed", "interrupted"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, trigger TEXT NOT NULL, status TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, pid INTEGER NOT NULL, reason TEXT,
    added INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    chunks_embedded INTEGER NOT NULL DEFAULT 0, errors TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_by_source ON runs (source, started);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
"""
_COLUMNS = ("id, source, trigger, status, started, finished, pid, reason, added, updated, unchanged, deleted, "
            "failed, chunks_embedded, errors")  # fmt: skip

# Runs started by this process and not finished yet, across every RunHistory in it: a pid that
# is alive and ours is no proof of a live run (a restarted container's server is PID 1 again).
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


class SourceRun(BaseModel):
    """One run of one source (`ragline runs --json`, the server's `/v1/runs`)."""

    id: str
    source: str
    trigger: Trigger
    status: Status
    started: datetime
    finished: datetime | None = None
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = Field(0, description="Documents that failed (a failed source counts one).")
    errors: list[str] = Field(default_factory=list, description=f"`document: error`, the first {MAX_ERRORS}.")
    pid: int = Field(description="The process that ran it.")
    chunks_embedded: int = 0
    reason: str | None = Field(None, description="Why a run was skipped or interrupted.")

    def contract(self) -> dict:
        """The stable JSON of `ragline runs --json`."""
        return self.model_dump(mode="json", exclude={"pid", "chunks_embedded", "reason"})


def _check(value: str, allowed: object, what: str) -> None:
    """Refuse a value the history could not read back (a typo in a caller's trigger)."""
    if value not in get_args(allowed):
        raise ValueError(f"{what} {value!r} is not one of {', '.join(get_args(allowed))}")


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def capped_errors(errors: Iterable[str]) -> list[str]:
    """At most MAX_ERRORS short lines, the last saying how many more there were."""
    lines = [e if len(e) <= MAX_ERROR_CHARS else e[: MAX_ERROR_CHARS - 1] + "…" for e in errors]
    if len(lines) > MAX_ERRORS:
        lines = [*lines[: MAX_ERRORS - 1], f"… and {len(lines) - MAX_ERRORS + 1} more"]
    return lines


class RunHistory:
    """The runs of one store, safe to share between threads (one connection, one lock) and
    between processes (SQLite in WAL mode)."""

    def __init__(self, store_dir: Path):
        self.path = Path(store_dir) / RUNS_FILE
        self._db, self._lock = connect(
            self.path, SCHEMA, remedy="Move it away: the run history is lost, new runs start a new file",
            pragmas=("PRAGMA busy_timeout = 5000",),
        )  # fmt: skip

    def _row(self, row: tuple) -> SourceRun:
        (run_id, source, trigger, status, started, finished, pid, reason,
         added, updated, unchanged, deleted, failed, chunks, errors) = row  # fmt: skip
        return SourceRun(
            id=run_id, source=source, trigger=trigger, status=status, started=_when(started), finished=_when(finished),
            pid=pid, reason=reason, added=added, updated=updated, unchanged=unchanged, deleted=deleted, failed=failed,
            chunks_embedded=chunks, errors=json.loads(errors),
        )  # fmt: skip

    def _insert(self, source: str, trigger: str, status: str, *, reason: str | None = None) -> SourceRun:
        _check(trigger, Trigger, "trigger")
        now = time.time()
        run_id = uuid.uuid4().hex
        finished = None if status == "running" else now
        with self._db:
            self._db.execute(
                "INSERT INTO runs (id, source, trigger, status, started, finished, pid, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, source, trigger, status, now, finished, os.getpid(), reason),
            )
        return self._get(run_id)

    def _get(self, run_id: str) -> SourceRun | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._row(row) if row else None

    @serialised
    def start(self, source: str, trigger: Trigger) -> SourceRun:
        """A new run, `running`, recorded with this process's pid."""
        run = self._insert(source, trigger, "running")
        with _LIVE_LOCK:
            _LIVE.add(run.id)
        return run

    @serialised
    def finish(
        self,
        run_id: str,
        status: FinalStatus,
        report: IngestReport | None = None,
        errors: Iterable[str] = (),
        *,
        reason: str | None = None,
    ) -> SourceRun:
        """The run's outcome: counts from `report`, its errors and then `errors`, capped."""
        _check(status, FinalStatus, "status")
        report = report or IngestReport()
        lines = capped_errors([*(f"{e.document}: {e.error}" for e in report.errors), *errors])
        if status == "interrupted" and reason is None:
            reason = "stopped before it finished"
        with self._db:
            updated = self._db.execute(
                "UPDATE runs SET status = ?, finished = ?, reason = COALESCE(?, reason), added = ?, updated = ?, "
                "unchanged = ?, deleted = ?, failed = ?, chunks_embedded = ?, errors = ? WHERE id = ?",
                (status, time.time(), reason, report.added, report.updated, report.unchanged, report.deleted,
                 report.failed, report.chunks_embedded, json.dumps(lines, ensure_ascii=False), run_id),
            )  # fmt: skip
        with _LIVE_LOCK:
            _LIVE.discard(run_id)
        if updated.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return self._get(run_id)

    @serialised
    def skipped(self, source: str, trigger: Trigger, reason: str = "overlap") -> SourceRun:
        """A tick or request that did not run, and why (`overlap`: the source was running)."""
        return self._insert(source, trigger, "skipped", reason=reason)

    @serialised
    def runs(self, source: str | None = None, limit: int = 100) -> list[SourceRun]:
        """Newest first."""
        where, args = ("WHERE source = ?", (source,)) if source is not None else ("", ())
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs {where} ORDER BY started DESC, rowid DESC LIMIT ?", (*args, limit)
        )
        return [self._row(row) for row in rows]

    @serialised
    def get(self, run_id: str) -> SourceRun | None:
        return self._get(run_id)

    @serialised
    def counts_by_status(self) -> dict[str, int]:
        """How many runs ended (or are) in each status: one aggregate query, for metrics."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    @serialised
    def last(self, source: str) -> SourceRun | None:
        """The source's newest run that did run (skipped ticks left out)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE source = ? AND status != 'skipped' ORDER BY started DESC, rowid DESC "
            "LIMIT 1", (source,),
        ).fetchone()  # fmt: skip
        return self._row(row) if row else None

    @serialised
    def interrupt_stale(self) -> int:
        """Mark `interrupted` the runs still `running` whose process is gone, or is this one
        but did not start them (a restart under a reused pid); returns how many."""
        with _LIVE_LOCK:
            live = set(_LIVE)
        me = os.getpid()
        stale = [
            run_id for run_id, pid in self._db.execute("SELECT id, pid FROM runs WHERE status = 'running'")
            if run_id not in live and (pid == me or not process_alive(pid))
        ]  # fmt: skip
        with self._db:
            self._db.executemany(
                "UPDATE runs SET status = 'interrupted', finished = ?, reason = 'its process ended mid-run' "
                "WHERE id = ? AND status = 'running'", [(time.time(), run_id) for run_id in stale],
            )  # fmt: skip
        return len(stale)

    @serialised
    def close(self) -> None:
        self._db.close()
