"""Run history: one row per run of a source, in `runs.sqlite` in the store directory, or in
the database replicas share (`[shared_state]`), where every replica reads the same runs.

A run is recorded `running` when it starts (with the pid of its process and the process space
that pid belongs to) and gets its final status when it ends. A process killed mid-run (kill
-9, power loss) cannot record that, so `interrupt_stale` closes runs whose process is gone;
the ingest pipeline's crash-safe order makes the next run of the source converge to a clean
ingest.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field
from sqlalchemy import Column, Connection, Float, Index, Integer, MetaData, String, Table, Text, func, inspect, select

from ragline.errors import SharedStateError, StoreError
from ragline.models import IngestReport
from ragline.processes import process_alive, process_space
from ragline.state.database import exclusive, open_engine, reading

RUNS_FILE = "runs.sqlite"
MAX_ERRORS = 20  # per run; the ledger's last report keeps every error of the source's last run
MAX_ERROR_CHARS = 300

Trigger = Literal["cron", "watch", "manual", "api", "catch-up"]
Status = Literal["running", "succeeded", "partial", "failed", "interrupted", "skipped"]
FinalStatus = Literal["succeeded", "partial", "failed", "interrupted"]
_REMEDY = "Move it away: the run history is lost, new runs start a new file"
_WRITABLE = "Give this process write access to the store directory, or open a copy of it."
_COUNTS = ("added", "updated", "unchanged", "deleted", "failed", "chunks_embedded")

_metadata = MetaData()
runs_table = Table(
    "runs", _metadata,
    Column("id", String(32), primary_key=True),
    Column("source", Text, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started", Float, nullable=False),
    Column("finished", Float),
    Column("pid", Integer, nullable=False),
    Column("reason", Text),
    *(Column(name, Integer, nullable=False, server_default="0") for name in _COUNTS),
    Column("errors", Text, nullable=False, server_default="[]"),
    Column("space", String(300), nullable=False, server_default=""),  # '' in files older than the column: here
    Index("runs_by_source", "source", "started"),
    Index("runs_by_status", "status"),
)  # fmt: skip

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
    """The runs of one store (or of every replica, with `url`), safe to share between threads
    and processes: every write is one transaction that excludes the others."""

    def __init__(self, store_dir: Path, url: str | None = None):
        self.path = Path(store_dir) / RUNS_FILE
        self._local = url is None
        if self._local:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(self.path, f"cannot be written ({exc.strerror})", _WRITABLE) from None
        self._engine = open_engine(url or f"sqlite:///{self.path}")
        with self._db() as db:
            _metadata.create_all(db)
            if "space" not in {column["name"] for column in inspect(db).get_columns("runs")}:
                db.exec_driver_sql("ALTER TABLE runs ADD COLUMN space TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def _db(self, *, write: bool = True) -> Iterator[Connection]:
        """A write transaction (one writer at a time), or a read that takes no lock. In the
        store's own file a failure is a StoreError naming the file and what to do."""
        try:
            with exclusive(self._engine, "ragline runs") if write else reading(self._engine) as db:
                yield db
        except SharedStateError as exc:
            if not self._local:
                raise
            if "readonly" in exc.detail or "unable to open" in exc.detail:
                raise StoreError(self.path, f"cannot be written ({exc.detail})", _WRITABLE) from None
            raise StoreError(self.path, f"is not a usable SQLite database ({exc.detail})", _REMEDY) from None

    @staticmethod
    def _run(row) -> SourceRun:
        return SourceRun(
            id=row.id, source=row.source, trigger=row.trigger, status=row.status, started=_when(row.started),
            finished=_when(row.finished), pid=row.pid, reason=row.reason, errors=json.loads(row.errors),
            **{name: getattr(row, name) for name in _COUNTS},
        )  # fmt: skip

    def _select(self, db: Connection, *where, limit: int | None = None) -> list[SourceRun]:
        query = select(runs_table).where(*where).order_by(runs_table.c.started.desc(), runs_table.c.id.desc())
        return [self._run(row) for row in db.execute(query.limit(limit))]

    def _insert(self, source: str, trigger: str, status: str, *, reason: str | None = None) -> SourceRun:
        _check(trigger, Trigger, "trigger")
        now, run_id = time.time(), uuid.uuid4().hex
        with self._db() as db:
            db.execute(runs_table.insert().values(
                id=run_id, source=source, trigger=trigger, status=status, started=now,
                finished=None if status == "running" else now, pid=os.getpid(), space=process_space(), reason=reason,
            ))  # fmt: skip
            return self._select(db, runs_table.c.id == run_id)[0]

    def start(self, source: str, trigger: Trigger) -> SourceRun:
        """A new run, `running`, recorded with this process's pid."""
        run = self._insert(source, trigger, "running")
        with _LIVE_LOCK:
            _LIVE.add(run.id)
        return run

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
        with self._db() as db:
            updated = db.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                status=status, finished=time.time(), reason=func.coalesce(reason, runs_table.c.reason),
                errors=json.dumps(lines, ensure_ascii=False), **{name: getattr(report, name) for name in _COUNTS},
            ))  # fmt: skip
            found = self._select(db, runs_table.c.id == run_id)
        with _LIVE_LOCK:
            _LIVE.discard(run_id)
        if updated.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in {self}")
        return found[0]

    def skipped(self, source: str, trigger: Trigger, reason: str = "overlap") -> SourceRun:
        """A tick or request that did not run, and why (`overlap`: the source was running)."""
        return self._insert(source, trigger, "skipped", reason=reason)

    def runs(self, source: str | None = None, limit: int = 100) -> list[SourceRun]:
        """Newest first."""
        with self._db(write=False) as db:
            return self._select(db, *([runs_table.c.source == source] if source is not None else []), limit=limit)

    def get(self, run_id: str) -> SourceRun | None:
        with self._db(write=False) as db:
            found = self._select(db, runs_table.c.id == run_id)
        return found[0] if found else None

    def counts_by_status(self) -> dict[str, int]:
        """How many runs ended (or are) in each status: one aggregate query, for metrics."""
        with self._db(write=False) as db:
            return dict(db.execute(select(runs_table.c.status, func.count()).group_by(runs_table.c.status)).all())

    def last(self, source: str) -> SourceRun | None:
        """The source's newest run that did run (skipped ticks left out)."""
        with self._db(write=False) as db:
            found = self._select(db, runs_table.c.source == source, runs_table.c.status != "skipped", limit=1)
        return found[0] if found else None

    def interrupt_stale(self) -> int:
        """Mark `interrupted` the runs still `running` in this process space whose process is
        gone, or is this one but did not start them (a restart under a reused pid); returns
        how many. Runs of other machines are theirs to close."""
        with _LIVE_LOCK:
            live = set(_LIVE)
        me = os.getpid()
        with self._db() as db:
            running = db.execute(select(runs_table.c.id, runs_table.c.pid).where(
                runs_table.c.status == "running", runs_table.c.space.in_(["", process_space()])))  # fmt: skip
            stale = [run_id for run_id, pid in running if run_id not in live and (pid == me or not process_alive(pid))]
            if stale:
                db.execute(runs_table.update().where(runs_table.c.id.in_(stale), runs_table.c.status == "running")
                           .values(status="interrupted", finished=time.time(), reason="its process ended mid-run"))  # fmt: skip
        return len(stale)

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return str(self.path) if self._local else self._engine.url.render_as_string(hide_password=True)
