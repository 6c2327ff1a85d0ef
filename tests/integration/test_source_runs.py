"""Runs of configured sources for real: a schedule over a slow web source on 127.0.0.1, a run
stopped between batches, a run whose process is killed, and the `runs` / `schedule list` JSON."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from slow_site import SlowSite
from typer.testing import CliRunner

import ragline
from ragline.cli import app
from ragline.runs.history import RunHistory
from ragline.runs.locks import SourceLock
from ragline.runs.runner import SourceRunner, UnknownSourceError
from ragline.schedule.scheduler import Scheduler

PAGES = 3
CONTRACT = {"id", "source", "trigger", "status", "started", "finished", "added", "updated", "unchanged", "deleted",
            "failed", "errors"}  # fmt: skip


@pytest.fixture
def site():
    served = SlowSite(pages=PAGES)
    yield served
    served.close()


@pytest.fixture
def warm(embedder, tmp_path_factory):
    """The model, chunker and HTML parser loaded before a timed schedule starts (once-per-session
    costs of seconds), by ingesting one page elsewhere."""
    folder = tmp_path_factory.mktemp("warm-up")
    (folder / "page.html").write_text("<html><body><p>Loaded before the clock starts.</p></body></html>")
    with ragline.open(folder / "store", embedder=embedder) as rag:
        rag.ingest(folder / "page.html")
    return embedder


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _state(rag) -> tuple:
    """What a converged store is: each source's documents and chunks, and the index's point ids."""
    return ([(s.source, s.documents, s.chunks) for s in rag.sources()],
            sorted(str(p.id) for p in rag.store.iter_points()))  # fmt: skip


def test_a_schedule_over_a_slow_source_never_overlaps_and_records_skipped_ticks(tmp_path, warm, site):
    site.delay = 0.4  # a run takes over 1.2 s; the schedule fires every second
    with ragline.open(tmp_path / "store", embedder=warm, sources=[site.source(interval_seconds=1)]) as rag:
        history = RunHistory(rag.path)
        runner = SourceRunner(rag, history)
        scheduler = Scheduler(runner, rag.config.sources, history, tick_seconds=0.05)
        scheduler.start()
        try:
            _wait(lambda: sum(r.status == "succeeded" for r in history.runs()) >= 2, 20, "two finished runs")
        finally:
            scheduler.stop()
            runner.stop_all(timeout=10)
        assert runner.running() == []
        runs = history.runs("slow-site")[::-1]  # oldest first
        documents = {s.source: s.documents for s in rag.sources()}
    ran = [r for r in runs if r.status != "skipped"]
    skipped = [r for r in runs if r.status == "skipped"]
    assert {r.trigger for r in runs} == {"cron"}
    for earlier, later in itertools.pairwise(ran):
        assert earlier.finished <= later.started, "two runs of one source overlapped"
    assert site.most_in_flight == 1
    assert skipped and all(r.reason == "overlap" for r in skipped)
    for tick in skipped:  # each skipped tick found a run in progress
        assert any(r.started <= tick.started <= r.finished for r in ran)
    first, second = ran[0], ran[1]
    assert (first.status, first.added, first.failed, first.errors) == ("succeeded", PAGES, 0, [])
    assert (second.status, second.added, second.unchanged) == ("succeeded", 0, PAGES)
    assert all(r.status in ("succeeded", "interrupted") for r in ran)  # stop_all may have ended the last one
    assert all(r.deleted == 0 for r in ran) and documents == {"web:slow-site": PAGES}
    history.close()


class _StopOnceCommitted(threading.Event):
    """A stop request that arrives once the ledger holds `documents` documents: the pipeline
    looks at it between write batches, so the stop lands exactly at a batch boundary."""

    def __init__(self, rag, documents: int):
        super().__init__()
        self.rag, self.documents = rag, documents

    def is_set(self) -> bool:
        return super().is_set() or sum(s.documents for s in self.rag.sources()) >= self.documents


def _write_notes(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text(f"Note {name} says the tide at {name} turns at {len(name)} o'clock.\n")


def test_a_run_stopped_between_batches_is_interrupted_deletes_nothing_and_the_rerun_converges(tmp_path, embedder):
    notes = tmp_path / "notes"
    _write_notes(notes, ["a.md", "b.txt", "gone.md"])
    one_per_batch = {"batch_chunks": 1}
    source = {"kind": "filesystem", "root": str(notes)}  # no name: runs are named like the ledger's source
    with ragline.open(tmp_path / "store", embedder=embedder, sources=[source], ingest=one_per_batch) as rag:
        history = RunHistory(rag.path)
        runner = SourceRunner(rag, history)
        (name,) = runner.names()
        assert name == f"file://{notes.resolve()}"
        with pytest.raises(UnknownSourceError, match=r"no \[\[sources\]\] entry named 'notes'; known: 'file://"):
            runner.run("notes", "manual")
        assert runner.run(name, "manual").added == 3

        (notes / "gone.md").unlink()
        _write_notes(notes, ["c.md", "d.txt", "e.md", "f.txt"])
        stopped = runner.run(name, "api", stop=_StopOnceCommitted(rag, documents=5))
        assert (stopped.status, stopped.added, stopped.deleted, stopped.reason) == (
            "interrupted", 2, 0, "stopped before it finished")  # fmt: skip
        assert sum(s.documents for s in rag.sources()) == 5, "an unfinished listing must not delete gone.md"
        assert rag.sources()[0].last_report["interrupted"] is True

        rerun = runner.run(name, "manual")
        assert (rerun.status, rerun.added, rerun.unchanged, rerun.deleted) == ("succeeded", 2, 4, 1)
        converged = _state(rag)
        assert rag.store.count() == 6
        history.close()
    with ragline.open(tmp_path / "clean", embedder=embedder, ingest=one_per_batch) as clean:
        clean.ingest(notes)
        assert _state(clean) == converged


def test_a_watched_folder_runs_once_per_burst_of_changes(tmp_path, warm):
    notes = tmp_path / "watched"
    _write_notes(notes, ["a.md"])
    source = {"kind": "filesystem", "root": str(notes), "name": "watched", "watch": True}
    with ragline.open(tmp_path / "store", embedder=warm, sources=[source]) as rag:
        history = RunHistory(rag.path)
        runner = SourceRunner(rag, history)
        scheduler = Scheduler(runner, rag.config.sources, history)
        scheduler.start()

        def finished():
            return [r for r in history.runs() if r.finished]

        try:
            time.sleep(0.2)  # the watcher's first look at the folder
            _write_notes(notes, ["b.md"])
            _wait(lambda: len(finished()) == 1, 10, "a run for the first change")
            for name in ["c.md", "d.md", "e.md", "f.md"]:  # a burst, each change within the quiet period
                _write_notes(notes, [name])
                time.sleep(0.1)
            _wait(lambda: len(finished()) == 2, 10, "a run for the burst")
            time.sleep(1.1)  # longer than the quiet period: nothing more may follow
        finally:
            scheduler.stop()
            runner.stop_all(timeout=10)
        runs = history.runs()[::-1]
        assert scheduler.schedules() == [{"source": "watched", "schedule": "on change", "timezone": "UTC",
                                          "next_run": None, "last_run_status": "succeeded"}]  # fmt: skip
        history.close()
    assert [(r.trigger, r.status, r.added) for r in runs] == [("watch", "succeeded", 2), ("watch", "succeeded", 4)]


KILLED_RUNNER = """
import sys, json, ragline
from ragline.runs.history import RunHistory
from ragline.runs.runner import SourceRunner
with ragline.open(sys.argv[1], sources=[json.loads(sys.argv[2])]) as rag:
    SourceRunner(rag, RunHistory(rag.path)).run("slow-site", "api")
"""


def test_a_killed_runs_record_becomes_interrupted_and_the_next_run_converges(tmp_path, embedder, site):
    store = tmp_path / "store"
    site.delay = 60  # the run never finishes by itself
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUNNER, str(store), json.dumps(site.source())])
    history = RunHistory(store)
    try:
        _wait(lambda: any(r.status == "running" for r in history.runs()), 30, "the subprocess's run to start")
        assert SourceLock.try_take(store, "slow-site") is None  # held by the other process's run
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    SourceLock.try_take(store, "slow-site").release()  # the kernel dropped it with the process
    (killed,) = history.runs()
    assert (killed.status, killed.pid, killed.trigger) == ("running", process.pid, "api")
    assert history.interrupt_stale() == 1
    killed = history.get(killed.id)
    assert (killed.status, killed.reason) == ("interrupted", "its process ended mid-run")
    assert killed.finished is not None

    site.delay = 0
    with ragline.open(store, embedder=embedder, sources=[site.source()]) as rag:
        rerun = SourceRunner(rag, history).run("slow-site", "manual")  # the dead run's lock went with it
        assert (rerun.status, rerun.added) == ("succeeded", PAGES)
        converged = _state(rag)
    with ragline.open(tmp_path / "clean", embedder=embedder, sources=[site.source()]) as clean:
        clean.ingest()
        assert _state(clean) == converged
    history.close()


@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    """An installed connector kind whose factory raises what no connector should (a bug)."""
    site = tmp_path / "site"
    (site / "ragline_failing-1.0.dist-info").mkdir(parents=True)
    (site / "ragline_failing_plugin.py").write_text("def make(config):\n    raise RuntimeError('the token expired')\n")
    (site / "ragline_failing-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ragline-failing\n"
                                                                     "Version: 1.0\n")  # fmt: skip
    (site / "ragline_failing-1.0.dist-info" / "entry_points.txt").write_text(
        "[ragline.connectors]\nfailing = ragline_failing_plugin:make\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ragline_failing_plugin", raising=False)


def test_an_exception_fails_the_run_is_logged_and_raised_to_ingest_callers(tmp_path, failing_plugin, caplog):
    with ragline.open(tmp_path / "store", sources=[{"kind": "failing", "name": "crm"}]) as rag:
        history = RunHistory(rag.path)
        runner = SourceRunner(rag, history)
        failed = runner.run("crm", "api")
        assert (failed.status, failed.errors) == ("failed", ["RuntimeError: the token expired"])
        assert "run %s of source %r failed" in [record.msg for record in caplog.records]
        with pytest.raises(RuntimeError, match="the token expired"):
            runner.ingest("crm", "manual")
        assert [(r.trigger, r.status) for r in history.runs()] == [("manual", "failed"), ("api", "failed")]
        assert runner.running() == [] and runner.run("crm", "api").status == "failed"  # the lock was released
        history.close()


def _cli(*args: str, cwd: Path) -> dict:
    command = [sys.executable, "-m", "ragline", *args, "--json"]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ingest_records_manual_runs_and_runs_and_schedule_list_print_their_contracts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_notes(tmp_path / "notes", ["a.md", "b.md"])
    _write_notes(tmp_path / "more", ["c.md"])
    (tmp_path / "ragline.toml").write_text(
        '[store]\npath = "store"\n\n'
        '[[sources]]\nkind = "filesystem"\nroot = "notes"\nname = "notes"\nschedule = "30 2 * * *"\n'
        'timezone = "Europe/Berlin"\n\n'
        '[[sources]]\nkind = "filesystem"\nroot = "more"\ninterval_seconds = 90\nwatch = true\n\n'
        '[[sources]]\nkind = "filesystem"\nroot = "missing"\nname = "broken"\n'
    )
    before = json.loads(CliRunner().invoke(app, ["ingest", "--json"]).stdout)  # exit 3: one source failed
    assert set(before) == {"added", "updated", "unchanged", "deleted", "failed", "chunks_embedded", "reconciled",
                           "errors"}  # fmt: skip
    assert (before["added"], before["failed"]) == (3, 1)
    assert before["errors"][0]["document"] == "[[sources]] kind=filesystem"  # as without run history

    more = f"file://{(tmp_path / 'more').resolve()}"
    runs = _cli("runs", cwd=tmp_path)["runs"]
    assert all(set(run) == CONTRACT for run in runs)
    assert [(r["source"], r["trigger"], r["status"], r["added"]) for r in runs] == [
        ("broken", "manual", "failed", 0), (more, "manual", "succeeded", 1), ("notes", "manual", "succeeded", 2)]  # fmt: skip
    assert "does not exist" in runs[0]["errors"][0]
    assert [r["source"] for r in _cli("runs", "--source", "notes", "--limit", "1", cwd=tmp_path)["runs"]] == ["notes"]

    schedules = _cli("schedule", "list", cwd=tmp_path)["schedules"]
    assert [set(row) for row in schedules] == [{"source", "schedule", "timezone", "next_run", "last_run_status"}] * 2
    notes_row, more_row = schedules
    assert (notes_row["source"], notes_row["schedule"], notes_row["timezone"], notes_row["last_run_status"]) == (
        "notes", "30 2 * * *", "Europe/Berlin", "succeeded")  # fmt: skip
    assert notes_row["next_run"][11:19] in ("02:30:00", "03:00:00")  # 03:00 on a spring-forward day
    assert (more_row["source"], more_row["schedule"], more_row["timezone"]) == (more, "every 90 s", "UTC")
    assert _cli("runs", "--store", str(tmp_path / "elsewhere"), cwd=tmp_path) == {"runs": []}
    assert not (tmp_path / "elsewhere").exists()
