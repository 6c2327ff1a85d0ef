"""Run history (`runs.sqlite`): records, order, the contract's JSON, and stale runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from ragline.errors import StoreError
from ragline.models import IngestError, IngestReport
from ragline.processes import process_alive
from ragline.runs.history import MAX_ERRORS, RUNS_FILE, RunHistory

CONTRACT = {"id", "source", "trigger", "status", "started", "finished", "added", "updated", "unchanged", "deleted",
            "failed", "errors"}  # fmt: skip


@pytest.fixture
def history(tmp_path):
    runs = RunHistory(tmp_path)
    yield runs
    runs.close()


def test_a_run_goes_from_running_to_its_outcome(history, tmp_path):
    run = history.start("docs", "cron")
    assert (tmp_path / RUNS_FILE).is_file()
    assert (run.status, run.trigger, run.pid, run.finished) == ("running", "cron", os.getpid(), None)
    report = IngestReport(added=2, updated=1, unchanged=5, deleted=1, failed=1, chunks_embedded=7,
                          errors=[IngestError(document="a.pdf", error="not a PDF")])  # fmt: skip
    done = history.finish(run.id, "partial", report, errors=["afterwards: something else"])
    assert done.status == "partial" and done.finished >= done.started
    assert (done.added, done.updated, done.unchanged, done.deleted, done.failed, done.chunks_embedded) == (2, 1, 5, 1, 1, 7)
    assert done.errors == ["a.pdf: not a PDF", "afterwards: something else"]
    assert history.get(run.id) == done
    assert set(done.contract()) == CONTRACT
    assert done.contract()["started"].endswith("Z")  # ISO 8601, UTC


def test_errors_are_capped_and_short(history):
    run = history.start("docs", "manual")
    report = IngestReport(failed=50, errors=[IngestError(document=f"d{n}", error="x" * 1000) for n in range(50)])
    errors = history.finish(run.id, "failed", report).errors
    assert len(errors) == MAX_ERRORS and errors[-1] == f"… and {50 - MAX_ERRORS + 1} more"
    assert all(len(line) <= 300 for line in errors)


def test_newest_first_by_source_with_a_limit_and_last_skips_skipped(history):
    first = history.start("docs", "cron")
    history.finish(first.id, "succeeded")
    other = history.start("wiki", "api")
    skipped = history.skipped("docs", "cron")
    assert (skipped.status, skipped.reason, skipped.finished is not None) == ("skipped", "overlap", True)
    assert [r.id for r in history.runs()] == [skipped.id, other.id, first.id]
    assert [r.id for r in history.runs("docs")] == [skipped.id, first.id]
    assert [r.id for r in history.runs(limit=1)] == [skipped.id]
    assert history.last("docs").id == first.id  # the skipped tick did not run
    assert history.last("nothing") is None and history.get("nope") is None
    assert history.counts_by_status() == {"succeeded": 1, "running": 1, "skipped": 1}


def test_interrupted_gets_a_reason_and_bad_values_are_refused(history):
    run = history.start("docs", "watch")
    assert history.finish(run.id, "interrupted").reason == "stopped before it finished"
    with pytest.raises(ValueError, match="trigger 'hourly' is not one of cron, watch, manual, api, catch-up"):
        history.start("docs", "hourly")
    with pytest.raises(ValueError, match="status 'done'"):
        history.finish(run.id, "done")
    with pytest.raises(KeyError, match="no run 'missing'"):
        history.finish("missing", "succeeded")


def test_stale_runs_are_those_of_dead_processes_or_a_previous_life_of_this_pid(history, tmp_path):
    live = history.start("docs", "cron")  # this process's, in progress
    dead_pid = _finished_pid()
    assert not process_alive(dead_pid)
    with sqlite3.connect(tmp_path / RUNS_FILE) as db:  # rows other processes left behind
        for run_id, pid in (("of-a-dead-process", dead_pid), ("of-this-pid-before-a-restart", os.getpid()),
                            ("of-a-live-process", os.getppid())):  # fmt: skip
            db.execute("INSERT INTO runs (id, source, trigger, status, started, pid) VALUES (?, 'wiki', 'cron', "
                       "'running', 1.0, ?)", (run_id, pid))  # fmt: skip
    assert history.interrupt_stale() == 2
    statuses = {run.id: run.status for run in history.runs()}
    assert statuses == {live.id: "running", "of-a-dead-process": "interrupted",
                        "of-this-pid-before-a-restart": "interrupted", "of-a-live-process": "running"}  # fmt: skip
    assert history.get("of-a-dead-process").reason == "its process ended mid-run"
    another = RunHistory(tmp_path)  # another history in this process knows the live run too
    assert another.interrupt_stale() == 0
    another.close()
    assert history.interrupt_stale() == 0


def _finished_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_damaged_history_file_is_a_store_error_naming_it(tmp_path):
    (tmp_path / RUNS_FILE).write_bytes(b"not a database, " * 64)
    with pytest.raises(StoreError, match=r"runs\.sqlite: is not a usable SQLite database.*Move it away") as error:
        RunHistory(tmp_path)
    assert "DatabaseError" in str(error.value)
