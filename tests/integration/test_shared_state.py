"""The day budget in a shared database: SQLite in the store directory, and a real PostgreSQL
server on 127.0.0.1 that several replicas share. Replicas are real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from postgres_server import PASSWORD
from recording_runner import RecordingRunner
from sqlalchemy import create_engine, insert, make_url, text

from ragline.config import ConfigError, load_config
from ragline.errors import SharedStateError
from ragline.ingest.config import SourceConfig
from ragline.llm.budget import Budget, BudgetExceeded, BudgetLimits, Tally
from ragline.llm.day_ledger import DayLedger, day_holds
from ragline.processes import process_space
from ragline.runs.history import RunHistory, runs_table
from ragline.schedule.scheduler import Scheduler
from ragline.state.leases import Lease
from ragline.state.url import shared_state_url

DAY = "2026-12-02"


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path) -> str:
    """A new, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'budget.sqlite'}"
    server = request.getfixturevalue("postgres_url")
    name = f"state_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


REPLICA = """
import sys
from ragline.llm.budget import Budget, BudgetExceeded, BudgetLimits
budget = Budget(BudgetLimits(per_day_usd=1.0), day_url=sys.argv[1])
granted = 0
for _ in range(40):
    try:
        hold = budget.reserve(0.03)
    except BudgetExceeded:
        continue
    budget.settle(hold, 0.03)
    granted += 1
print(granted)
"""


def test_replicas_racing_for_one_day_budget_get_exactly_what_fits(state_url) -> None:
    replicas = [
        subprocess.Popen([sys.executable, "-c", REPLICA, state_url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    granted = [int(replica.communicate(timeout=120)[0]) for replica in replicas]
    assert all(replica.returncode == 0 for replica in replicas)
    assert sum(granted) == 33  # 33 x $0.03 fit under $1.00, a 34th would not: none more, none fewer
    budget = Budget(BudgetLimits(per_day_usd=1.0), day_url=state_url)
    assert budget.spent_today() == pytest.approx(0.99)
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve(0.03)
    assert refused.value.scope == "day"
    budget.close()


def test_a_hold_from_another_machine_counts_until_its_lease_runs_out(state_url) -> None:
    now = [1_000.0]
    ledger = DayLedger(state_url, lambda: DAY, lease_s=60, clock=lambda: now[0])
    engine = create_engine(state_url)
    with engine.begin() as connection:  # a replica elsewhere holds $0.90; its pid means nothing here
        connection.execute(insert(day_holds).values(
            day=DAY, amount=0.9, space="another-host/boot/pid:[4026531836]", pid=999_999, expires_at=now[0] + 60,
        ))  # fmt: skip
    engine.dispose()

    def admit(spent: float, reserved: float) -> None:
        Tally(spent, reserved).check("day", 1.0, 0.5)

    with pytest.raises(BudgetExceeded):
        ledger.reserve(0.5, admit)
    now[0] += 61
    mine = ledger.reserve(0.5, admit)  # the other machine's lease ran out
    now[0] += 3_600  # a call of this live process outlasting its lease still counts
    with pytest.raises(BudgetExceeded):
        ledger.reserve(0.6, lambda spent, reserved: Tally(spent, reserved).check("day", 1.0, 0.6))
    ledger.settle(mine, 0.5)
    assert ledger.spent() == pytest.approx(0.5)
    ledger.close()


def test_a_hold_of_a_process_that_died_here_is_dropped_at_once(state_url) -> None:
    script = (
        "import os, sys\nfrom ragline.llm.budget import Budget, BudgetLimits\n"
        "Budget(BudgetLimits(per_day_usd=1.0), day_url=sys.argv[1]).reserve(0.9)\nos._exit(0)  # dies holding it\n"
    )
    subprocess.run([sys.executable, "-c", script, state_url], check=True, timeout=120)
    budget = Budget(BudgetLimits(per_day_usd=1.0), day_url=state_url)
    budget.settle(budget.reserve(0.9), 0.0)  # the lease (15 min) has not run out; the pid is gone
    budget.close()
    assert "/" in process_space()


def test_an_unreachable_database_refuses_without_showing_the_password() -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe closes
    url = f"postgresql+psycopg://ragline:{PASSWORD}@127.0.0.1:{port}/postgres"
    with pytest.raises(SharedStateError) as failed:
        Budget(BudgetLimits(per_day_usd=1.0), day_url=url)
    message = str(failed.value)
    assert f"127.0.0.1:{port}" in message and "***" in message and PASSWORD not in message


def test_shared_state_settings_keep_the_password_out_of_config_files(tmp_path, monkeypatch) -> None:
    config = tmp_path / "ragline.toml"
    config.write_text(f'[shared_state]\nurl = "postgresql+psycopg://ragline:{PASSWORD}@127.0.0.1/ragline"\n')
    with pytest.raises(ConfigError, match="shared_state.url.*password.*url_env") as error:
        load_config(config)
    assert PASSWORD not in str(error.value)

    config.write_text('[shared_state]\nurl = "mysql://ragline@127.0.0.1/ragline"\n')
    with pytest.raises(ConfigError, match="mysql is not supported"):
        load_config(config)

    config.write_text('[shared_state]\nurl_env = "RAGLINE_TEST_STATE_URL"\n')
    monkeypatch.delenv("RAGLINE_TEST_STATE_URL", raising=False)
    with pytest.raises(ConfigError, match="RAGLINE_TEST_STATE_URL, which is not set"):
        shared_state_url(load_config(config))  # unset: refused, not a silent fall back to local files
    monkeypatch.setenv("RAGLINE_TEST_STATE_URL", f"postgresql+psycopg://ragline:{PASSWORD}@127.0.0.1/ragline")
    assert shared_state_url(load_config(config)).endswith("@127.0.0.1/ragline")
    assert os.environ["RAGLINE_TEST_STATE_URL"] not in repr(load_config(config))


# --- two `ragline serve` replicas, one day budget ---------------------------------------------
# Replicas of a deployment share one Qdrant server; qdrant-client's ':memory:' server store
# lives inside one process, so here each replica has its own, filled with the same documents
# (what a shared server would hold). What is shared for real is the point under test: one
# PostgreSQL server holding the day budget, and one model server.


def test_a_day_budget_set_once_holds_across_two_replicas(tmp_path, postgres_url, embedder) -> None:
    from protocol_servers import API_KEY, EmbeddingsHandler, OpenAIHandler, ProtocolServer
    from ragline_server import api, finished_run, served

    from ragline.llm.fake import FakeProvider

    limit = 0.15
    documents = tmp_path / "handbook"
    documents.mkdir()
    (documents / "leave.md").write_text("# Paid leave\n\nNew employees get 25 days of paid leave per year.\n")
    fake = FakeProvider(lambda request: "Twenty-five days [1].", model="m")
    with ProtocolServer(OpenAIHandler, fake, API_KEY) as llm, ProtocolServer(EmbeddingsHandler, embedder, API_KEY) as vectors:
        config = tmp_path / "ragline.toml"
        config.write_text(  # embeddings from this process's model: the replicas load no model
            '[store]\nkind = "server"\nurl = ":memory:"\n\n[ingest]\nparse_workers = 0\n\n[retrieval]\nrerank = "none"\n\n'
            f'[embedding]\nprovider = "openai"\nmodel = "all-MiniLM-L6-v2"\nbase_url = "{vectors.base_url()}"\n'
            'api_key_env = "RAGLINE_TEST_KEY"\n\n'
            f'[llm]\nprovider = "openai"\nmodel = "m"\nbase_url = "{llm.base_url()}"\napi_key_env = "RAGLINE_TEST_KEY"\n'
            "max_tokens = 16\nprice_per_million_input = 100.0\nprice_per_million_output = 100.0\n\n"
            f"[cache]\nenabled = false\n\n[budget]\nper_day_usd = {limit}\n\n"
            '[shared_state]\nurl_env = "RAGLINE_STATE_URL"\n'
        )  # fmt: skip
        env = {"RAGLINE_TEST_KEY": API_KEY, "RAGLINE_STATE_URL": postgres_url}
        with served(tmp_path / "a", "--config", str(config), env=env) as a, \
                served(tmp_path / "b", "--config", str(config), env=env) as b:  # fmt: skip
            runs = [api(replica, "POST", "/v1/ingest", json={"paths": [str(documents)]}) for replica in (a, b)]
            for replica, run in zip((a, b), runs, strict=True):
                assert finished_run(replica, run["run_id"])["status"] == "succeeded"
            spent = {a.url: 0.0, b.url: 0.0}
            refusals: dict[str, dict] = {}
            for turn in range(200):
                replica = (a, b)[turn % 2]
                if replica.url in refusals:
                    continue
                response = httpx.post(f"{replica.url}/v1/query", timeout=120,
                                      json={"question": f"How many days of paid leave? ({turn})", "cache": False})
                if response.status_code == 402:
                    refusals[replica.url] = response.json()["error"]
                    if len(refusals) == 2:
                        break
                    continue
                assert response.status_code == 200, response.text
                spent[replica.url] += response.json()["cost_usd"]
    assert len(refusals) == 2, "both replicas end refused by the day budget"
    total = sum(spent.values())
    assert all(mine > 0 for mine in spent.values()), spent
    assert total <= limit
    for url, refusal in refusals.items():
        assert refusal["scope"] == "day" and refusal["spent_usd"] <= limit
        # alone, this replica would have admitted the call; the other replica's spend refused it
        assert spent[url] + refusal["needed_usd"] <= limit < refusal["spent_usd"] + refusal["needed_usd"] + 1e-9
    assert refusals[b.url]["spent_usd"] == pytest.approx(total)


# --- one scheduler at a time ------------------------------------------------------------------


def test_one_replica_fires_the_schedules_and_another_takes_over(state_url, tmp_path) -> None:
    now = [time.time() // 10 * 10 + 3]  # the history records real times
    sources = [SourceConfig(kind="filesystem", root=".", name="docs", interval_seconds=10)]

    def replica(name: str) -> tuple[Scheduler, RecordingRunner]:
        history = RunHistory(tmp_path / name, url=state_url)  # shared, as under [shared_state]
        runs = RecordingRunner(history)
        lease = Lease(state_url, "scheduler", ttl_s=30, clock=lambda: now[0])
        return Scheduler(runs, sources, history, clock=lambda: now[0], lease=lease), runs

    (a, runs_a), (b, runs_b) = replica("a"), replica("b")

    def beat(*schedulers: Scheduler, ticks: int) -> None:
        for _ in range(ticks):
            now[0] += 10
            for scheduler in schedulers:
                scheduler.tick()

    beat(a, b, ticks=6)
    assert len(runs_a.started) == 6 and runs_b.started == []  # each tick fired once, by the lease holder
    assert a.firing and not b.firing  # what GET /v1/schedules says as "firing"
    a.stop()  # a clean stop lets go of the lease: b fires from the next tick on
    beat(b, ticks=3)
    assert len(runs_a.started) == 6 and len(runs_b.started) == 3

    c, runs_c = replica("c")  # b vanishes without letting go (kill -9): c waits out the lease
    beat(c, ticks=2)
    assert runs_c.started == []
    beat(c, ticks=2)
    assert len(runs_c.started) >= 1 and len(runs_b.started) == 3
    assert runs_c.started[0] == ("docs", "catch-up")  # the ticks nobody fired while b's lease ran out
    assert c.schedules()[0]["source"] == "docs"  # a replica that does not lead still plans the same beat


def test_replicas_share_one_run_history_and_close_only_their_own_stale_runs(state_url, tmp_path) -> None:
    a, b = RunHistory(tmp_path / "a", url=state_url), RunHistory(tmp_path / "b", url=state_url)
    run = a.start("docs", "cron")
    assert [r.id for r in b.runs()] == [run.id] and b.get(run.id).status == "running"
    engine = create_engine(state_url)
    with engine.begin() as connection:  # a run another machine was running (its pid means nothing here)
        connection.execute(runs_table.insert().values(
            id="elsewhere", source="docs", trigger="cron", status="running", started=1.0, pid=999_999,
            space="another-host/boot/pid:[4026531836]",
        ))  # fmt: skip
    engine.dispose()
    assert b.interrupt_stale() == 0  # a's run is live in this process; the other machine's is not ours
    b.finish(run.id, "succeeded")
    assert a.last("docs").status == "succeeded" and a.counts_by_status() == {"running": 1, "succeeded": 1}
    a.close()
    b.close()


# --- answers cached in Redis, shared by replicas ----------------------------------------------


def test_an_ingest_on_one_replica_invalidates_the_answers_another_cached(tmp_path, redis_url, embedder) -> None:
    """Two replicas in one process over the same server store (each `:memory:` stands in for
    the one Qdrant server) with one Redis answer cache and one shared-state database. The
    answers in Redis tell an answer-cache hit (no new key) from a miss (a new key)."""
    import redis

    import ragline
    from ragline.llm.fake import FakeProvider
    from ragline.pipelines.answer_cache import REDIS_ANSWER_PREFIX

    documents = tmp_path / "handbook"
    documents.mkdir()
    leave = documents / "leave.md"
    leave.write_text("# Paid leave\n\nNew employees get 25 days of paid leave per year.\n")
    question = "How many days of paid leave do new employees get?"
    answers = redis.Redis.from_url(redis_url)

    def stored() -> int:
        return len(answers.keys(f"{REDIS_ANSWER_PREFIX}*"))

    def replica(name: str):
        return ragline.open(
            tmp_path / name, embedder=embedder, provider=FakeProvider(lambda request: "Twenty-five [1].", model="m"),
            store={"kind": "server", "url": ":memory:", "collection": "handbook"}, retrieval={"rerank": "none"},
            ingest={"parse_workers": 0}, cache={"backend": "redis", "redis_url": redis_url},
            shared_state={"url": f"sqlite:///{tmp_path / 'state.sqlite'}"},
        )  # fmt: skip

    with replica("a") as a, replica("b") as b:
        for rag in (a, b):
            assert rag.ingest(documents).failed == 0
        b.query(question)
        assert stored() == 1
        assert b.query(question).cached and stored() == 1  # a hit

        leave.write_text("# Paid leave\n\nNew employees get 30 days of paid leave per year.\n")
        assert a.ingest(documents).updated == 1  # b's own ledger never saw this ingest
        b.query(question)
        assert stored() == 2  # not the answer cached before the change: answered anew, stored anew
        b.query(question)
        assert stored() == 2
    answers.close()
