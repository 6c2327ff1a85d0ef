"""Runs under a real `ragline serve` (a subprocess on 127.0.0.1): an interval schedule over a
slow source never overlaps and records its skipped ticks (the CLI reads the same history);
100 concurrent queries while a ~1k-document ingest runs all succeed and see only committed
documents; SIGTERM and kill -9 mid-run leave an `interrupted` run and a store whose next run
converges to a clean ingest; the status page renders in a real headless Chromium.

The model is a scripted FakeProvider behind a real OpenAI-compatible server, so queries are
cheap and their answers known."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer
from ragline_server import Served, api, finished_run, run_of, served, start, wait_for
from slow_site import SlowSite

import ragline
from ragline.components import EMBEDDING_CACHE_FILE
from ragline.llm.fake import FakeProvider
from ragline.models import Answer, Hit
from ragline.retrieval.ownership import LOCK_FILE, read_owner
from ragline.runs.history import RunHistory

ENV = {"RAGLINE_TEST_KEY": API_KEY}
ANSWER = "The records say so [1]."
CONTRACT = {"id", "source", "trigger", "status", "started", "finished", "added", "updated", "unchanged", "deleted",
            "failed", "errors"}  # fmt: skip
WORDS = ["harbor", "lantern", "meadow", "quartz", "saffron", "timber", "velvet", "willow", "ember", "falcon", "granite",
         "juniper", "kettle", "marble", "nectar", "orchid", "pebble", "quiver", "raven", "summit", "thistle", "umber",
         "violet", "walnut", "yarrow", "zephyr", "anchor", "bramble", "cobalt", "dune"]  # fmt: skip


# --- helpers ---


@pytest.fixture(scope="module")
def model_server():
    with ProtocolServer(OpenAIHandler, FakeProvider(lambda request: ANSWER, model="scripted"), API_KEY) as server:
        yield server


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    raise TypeError(value)


def write_config(path: Path, model_server, *, sources: list[dict], **sections: dict) -> Path:
    text = (f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = {_toml(model_server.base_url())}\n'
            'api_key_env = "RAGLINE_TEST_KEY"\n')  # fmt: skip
    for name, values in sections.items():
        text += f"\n[{name}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())
    for source in sources:
        text += "\n[[sources]]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in source.items())
    path.write_text(text)
    return path


def cli(*args: str, cwd: Path) -> dict:
    """`ragline ARGS` as its own process (in `cwd`, so no stray ragline.toml is read); its JSON."""
    done = subprocess.run([sys.executable, "-m", "ragline", *args], capture_output=True, text=True, cwd=cwd,
                          check=False, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **ENV})  # fmt: skip
    assert done.returncode == 0, f"ragline {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def _at(moment: str | None) -> float:
    """A history time as a timestamp; None (not finished) is the end of time."""
    return float("inf") if moment is None else datetime.fromisoformat(moment).timestamp()


def documents(server: Served) -> int:
    return sum(source["documents"] for source in api(server, "GET", "/v1/sources")["sources"])


def store_state(store: Path, config: Path) -> tuple:
    """What a converged store is: each source's documents and chunks, and the index's point ids."""
    with ragline.open(store, config_file=config) as rag:
        return ([(s.source, s.documents, s.chunks) for s in rag.sources()],
                sorted(str(p.id) for p in rag.store.iter_points()))  # fmt: skip


# --- 1. an interval schedule over a slow source ---


def test_an_interval_schedule_over_a_slow_source_never_overlaps_and_the_cli_reads_the_same_runs(tmp_path, model_server):
    site = SlowSite(pages=3, delay=1.0)  # fetched one at a time: a run takes over 3 s, the schedule fires every 2 s
    store = tmp_path / "store"
    config = write_config(tmp_path / "ragline.toml", model_server, sources=[site.source(interval_seconds=2)],
                          retrieval={"rerank": "none"})  # fmt: skip
    try:
        with served(store, "--config", str(config), env=ENV) as server:

            def enough():  # a second run started after the first (which the first run's ticks skipped)
                runs = api(server, "GET", "/v1/runs")["runs"]
                ran = [r for r in runs if r["status"] != "skipped"]
                return len(ran) >= 2 and len(runs) > len(ran) and runs

            wait_for(enough, 40, "a second run and a skipped tick", poll=0.25)
            before = api(server, "GET", "/v1/runs")["runs"]
            listed = cli("runs", "--json", "--store", str(store), cwd=tmp_path)["runs"]  # reads runs.sqlite itself
            after = api(server, "GET", "/v1/runs")["runs"]
            health = api(server, "GET", "/healthz")
        final = cli("runs", "--json", "--store", str(store), cwd=tmp_path)["runs"]
    finally:
        site.close()
    assert health["status"] == "ok"

    runs = before[::-1]  # oldest first
    ran = [r for r in runs if r["status"] != "skipped"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert {r["trigger"] for r in runs} == {"cron"} and {r["source"] for r in runs} == {"slow-site"}
    for earlier, later in itertools.pairwise(ran):
        assert earlier["finished"] is not None and _at(earlier["finished"]) <= _at(later["started"]), (
            f"two runs of one source overlapped: {earlier} and {later}")  # fmt: skip
    assert site.most_in_flight == 1  # the site never saw two runs at once either
    assert skipped and all(r["reason"] == "overlap" and r["finished"] == r["started"] for r in skipped)
    for tick in skipped:  # each skipped tick found a run in progress
        assert any(_at(r["started"]) <= _at(tick["started"]) <= _at(r["finished"]) for r in ran), tick
    assert (ran[0]["status"], ran[0]["added"], ran[0]["failed"], ran[0]["errors"]) == ("succeeded", 3, 0, [])
    assert all(r["status"] in ("succeeded", "running") for r in ran)

    # The CLI, another process, gives the same runs newest first, with exactly the contract's keys.
    assert all(set(run) == CONTRACT for run in listed)
    assert [_at(r["started"]) for r in listed] == sorted((_at(r["started"]) for r in listed), reverse=True)
    by_id = {r["id"]: r for r in after}
    assert {r["id"] for r in before} <= {r["id"] for r in listed} <= set(by_id)
    assert [r["id"] for r in listed] == [r["id"] for r in after if r["id"] in {x["id"] for x in listed}]
    for run in listed:
        server_side = {key: by_id[run["id"]][key] for key in CONTRACT}
        if run["status"] == "running":  # it may have finished between the two reads
            run, server_side = {k: run[k] for k in ("id", "source", "trigger", "started")}, {
                k: server_side[k] for k in ("id", "source", "trigger", "started")}  # fmt: skip
        assert run == server_side
    # The whole history, read once SIGTERM ended the server: still no overlap, no run left
    # `running`, and only the last can be `interrupted` (stopped mid-fetch).
    ran = [r for r in final[::-1] if r["status"] != "skipped"]
    for earlier, later in itertools.pairwise(ran):
        assert _at(earlier["finished"]) <= _at(later["started"]), f"two runs overlapped: {earlier} and {later}"
    assert all(r["status"] == "succeeded" for r in ran[:-1]) and ran[-1]["status"] in ("succeeded", "interrupted")
    assert {r["status"] for r in final} <= {"succeeded", "skipped", "interrupted"}


# --- 2. queries during an ingest, and 5. the status page: one server over a ~1k-document folder ---

BASE_DOCS = 20
NEW_DOCS = 1000  # ~25 words each: the run takes ~17 s here (parsing ~11 s, embedding ~5 s), the burst included
BATCH_CHUNKS = 250  # one chunk per document: the new documents are written in 4 batches
NEEDLE = "doc-zz-needle.txt"  # sorts last: written by the run's last batch
NEEDLE_QUESTION = "Who logs the fog horn at pier nineteen?"
OTHER_QUESTIONS = ["Which crate holds granite and willow?", "What does the depot inventory list?",
                   "Where are the saffron and cobalt shelves?", "Which record mentions falcon and raven?"]  # fmt: skip


def _write_records(folder: Path, names: list[str], seed: int) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        words = " ".join(WORDS[(seed + i * 7 + k * 3) % len(WORDS)] for k in range(14))
        (folder / name).write_text(f"Record {seed + i} of the depot inventory lists {words}.\n")


@pytest.fixture(scope="module")
def library(tmp_path_factory, model_server):
    """A server whose one configured source is a folder holding BASE_DOCS documents, ingested."""
    root = tmp_path_factory.mktemp("library")
    docs = root / "docs"
    _write_records(docs, [f"base-{i:02d}.txt" for i in range(BASE_DOCS)], seed=0)
    config = write_config(root / "ragline.toml", model_server, ingest={"batch_chunks": BATCH_CHUNKS},
                          retrieval={"rerank_top_n": 5},  # the cross-encoder reads 5 hits, not 20: a quicker burst
                          sources=[{"kind": "filesystem", "root": str(docs), "name": "library"}])  # fmt: skip
    with served(root / "store", "--config", str(config), env=ENV) as server:
        started = api(server, "POST", "/v1/ingest", json={"source": "library"})
        assert finished_run(server, started["run_id"])["status"] == "succeeded"
        yield server, docs


def _is_needle(document_id: str) -> bool:
    return document_id.endswith(NEEDLE)


def _request(client: httpx.Client, server: Served, kind: str, question: str) -> dict:
    """One request of the burst, its outcome checked; for the needle question, also how many
    documents the ledger held once it was answered."""
    sent = time.time()
    if kind == "retrieve":
        response = client.post(f"{server.url}/v1/retrieve", json={"question": question, "top_k": 5})
        assert response.status_code == 200, response.text[:500]
        hits = [Hit.model_validate(hit) for hit in response.json()["hits"]]
        assert hits and all(hit.text and hit.chunk_id for hit in hits)
        found = [hit.document_id for hit in hits]
    elif kind == "query":
        response = client.post(f"{server.url}/v1/query", json={"question": question, "cache": False})
        assert response.status_code == 200, response.text[:500]
        answer = Answer.model_validate(response.json())
        assert answer.text == ANSWER and answer.trace_id and answer.citations and answer.provider
        found = [source.document_id for source in answer.sources]
    else:  # a streamed query: deltas, then one answer event, never an error event
        response = client.post(f"{server.url}/v1/query", json={"question": question, "cache": False, "stream": True})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [block.split("\n", 1) for block in response.text.strip().split("\n\n")]
        names = [event.removeprefix("event: ") for event, _ in events]
        assert names[-1] == "answer" and set(names[:-1]) == {"delta"}, names
        answer = Answer.model_validate(json.loads(events[-1][1].removeprefix("data: ")))
        assert (
            answer.text
            == ANSWER
            == "".join(json.loads(data.removeprefix("data: "))["delta"] for _, data in events[:-1])
        )
        found = [source.document_id for source in answer.sources]
    answered = time.time()
    committed = documents(server) if question == NEEDLE_QUESTION else None
    return {"kind": kind, "question": question, "sent": sent, "answered": answered, "found": found,
            "committed_after": committed}  # fmt: skip


def test_100_concurrent_queries_during_an_ingest_all_succeed_and_see_only_committed_documents(library):
    server, docs = library
    before = api(server, "POST", "/v1/retrieve", json={"question": NEEDLE_QUESTION, "top_k": 5})["hits"]
    assert before and not any(_is_needle(hit["document_id"]) for hit in before)

    _write_records(docs, [f"doc-{i:04d}.txt" for i in range(NEW_DOCS - 1)], seed=100)
    (docs / NEEDLE).write_text("The lighthouse keeper Orla Quennell logs the fog horn at pier nineteen every night.\n")
    started = api(server, "POST", "/v1/ingest", json={"source": "library"})
    run_id = started["run_id"]
    assert started["runs"][0]["status"] == "running"

    kinds = ["retrieve"] * 45 + ["query"] * 45 + ["stream"] * 10
    questions = [NEEDLE_QUESTION if i % 2 else OTHER_QUESTIONS[i % 4] for i in range(len(kinds))]
    limits = httpx.Limits(max_connections=len(kinds), max_keepalive_connections=len(kinds))
    with httpx.Client(timeout=120, limits=limits) as client, ThreadPoolExecutor(len(kinds)) as pool:
        outcomes = list(pool.map(lambda args: _request(client, server, *args), zip(kinds, questions, strict=True)))
    assert len(outcomes) == 100  # every one answered 200 with a valid body (checked in _request)

    run = finished_run(server, run_id, timeout=180)
    assert (run["status"], run["added"], run["unchanged"], run["failed"]) == ("succeeded", NEW_DOCS, BASE_DOCS, 0)
    assert all(_at(run["started"]) <= o["sent"] <= _at(run["finished"]) for o in outcomes)
    # Served while the run ran, not queued behind it (here all 100 within ~8 s of a ~17 s run;
    # the retriever serialises searches, so on other machines the burst may outlast the run).
    during = sum(o["answered"] < _at(run["finished"]) for o in outcomes)
    assert during >= len(outcomes) // 2, f"only {during} of {len(outcomes)} were answered while the run ran"

    # Only committed documents are seen: the needle is upserted after the run's third batch
    # commits, so an answer read back before that commit cannot contain it.
    before_last_batch = BASE_DOCS + NEW_DOCS - (NEW_DOCS % BATCH_CHUNKS or BATCH_CHUNKS)
    early = [o for o in outcomes if o["committed_after"] is not None and o["committed_after"] < before_last_batch]
    assert early, "every needle query came back after the run's writes began: use a larger folder"
    assert not [o for o in early if any(map(_is_needle, o["found"]))]

    # After the commit the answers change: the needle is found, first.
    after = api(server, "POST", "/v1/retrieve", json={"question": NEEDLE_QUESTION, "top_k": 5})["hits"]
    assert _is_needle(after[0]["document_id"])
    answer = api(server, "POST", "/v1/query", json={"question": NEEDLE_QUESTION, "cache": False})
    assert any(_is_needle(source["document_id"]) for source in answer["sources"])
    assert documents(server) == BASE_DOCS + NEW_DOCS


def _chromium_dom(chromium: str, url: str, profile: Path) -> tuple[str, list[str]]:
    """The rendered DOM of `url`, and the console errors Chromium logged loading it."""
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def test_the_status_page_shows_the_finished_run_and_a_trace_link_in_chromium(library, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for this test (.ci/run installs it: apt-get install chromium)")
    server, _ = library
    run = finished_run(server, api(server, "POST", "/v1/ingest", json={"source": "library"})["run_id"])
    assert run["status"] == "succeeded"
    answer = api(server, "POST", "/v1/query", json={"question": NEEDLE_QUESTION, "cache": False})

    dom, console = _chromium_dom(chromium, f"{server.url}/", tmp_path / "profile")
    assert console == []
    assert "<h1>ragline serve</h1>" in dom and "running: nothing" in dom
    sources = dom.split('<table id="sources">', 1)[1].split("</table>", 1)[0]
    assert "<td>library</td>" in sources and '<td class="succeeded">succeeded</td>' in sources
    runs = dom.split('<table id="runs">', 1)[1].split("</table>", 1)[0]
    row = runs.split(f"<td>{run['id']}</td>", 1)[1].split("</tr>", 1)[0]  # the run that just finished
    assert '<td>library</td><td>api</td><td class="succeeded">succeeded</td>' in row
    traces = dom.split('<table id="traces">', 1)[1].split("</table>", 1)[0]
    assert f'<a href="/traces/{answer["trace_id"]}">{answer["trace_id"][:12]}</a>' in traces

    trace_dom, console = _chromium_dom(chromium, f"{server.url}/traces/{answer['trace_id']}", tmp_path / "profile")
    assert console == []
    assert answer["trace_id"] in trace_dom and "query" in trace_dom


# --- 3. SIGTERM, then kill -9, mid-run: runs of several embedding windows and many write batches ---

CRASH_DOCS = 100
CRASH_CHUNKS = CRASH_DOCS * 24
# 24 chunks of <= 32 tokens per document, 2,400 in all: two embedding windows (the pipeline
# embeds ~2,048 chunks per call, then writes them batch by batch; a batch of >= 16 chunks is
# one document here), so a run commits 86 batches while 14 documents remain to be read,
# embedded and written. The run takes ~20 s here, most of it the model.
CRASH_CHUNKING = {"chunk_size": 32, "chunk_overlap": 0}
CRASH_INGEST = {"batch_chunks": 16}


@pytest.fixture
def crash_source(tmp_path, model_server):
    folder = tmp_path / "crates"
    folder.mkdir()
    for i in range(CRASH_DOCS):
        sentences = [f"Crate {i}.{s} holds " + " ".join(WORDS[(i * 5 + s * 11 + k) % len(WORDS)] for k in range(5)) + "."
                     for s in range(48)]  # fmt: skip
        (folder / f"crate-{i:03d}.txt").write_text(" ".join(sentences) + "\n")
    config = write_config(tmp_path / "ragline.toml", model_server, chunking=CRASH_CHUNKING, ingest=CRASH_INGEST,
                          retrieval={"rerank": "none"}, sources=[{"kind": "filesystem", "root": str(folder), "name": "crates"}])  # fmt: skip
    return folder, config


def _start_and_wait_for_a_commit(store: Path, config: Path, *, beyond: int = 0) -> tuple[Served, str]:
    """A server running a run of `crates`, once the run committed batches holding more than
    `beyond` documents in all (and before it ends)."""
    server = start(store, "--config", str(config), env=ENV)
    try:
        run_id = api(server, "POST", "/v1/ingest", json={"source": "crates"})["run_id"]
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def committed():
                count = sum(s["documents"] for s in client.get("/v1/sources").json()["sources"])
                run = client.get(f"/v1/runs/{run_id}").json()
                assert run["status"] == "running", f"the run ended before it could be stopped: {run}"
                return count > beyond

            wait_for(committed, 150, "the run's next committed batch", poll=0.02)
    except BaseException:
        server.process.kill()
        server.process.wait(10)
        raise
    return server, run_id


def _clean_state(folder: Path, config: Path, store: Path, tmp_path: Path, embedder) -> tuple:
    """A clean ingest of the same folder into a new store. Its embedding cache is a copy of
    `store`'s, so it costs no model time: counts and point ids do not depend on vectors."""
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(store / EMBEDDING_CACHE_FILE, clean / EMBEDDING_CACHE_FILE)
    with ragline.open(clean, config_file=config, embedder=embedder) as rag:
        report = rag.ingest()
        assert (report.added, report.failed, report.chunks_embedded) == (CRASH_DOCS, 0, CRASH_CHUNKS), report
    return store_state(clean, config)


def _assert_converged(store: Path, folder: Path, config: Path, tmp_path: Path, embedder) -> None:
    checked = cli("check", "--store", str(store), "--json", cwd=tmp_path)
    assert checked["consistent"] is True and checked["repaired"] is False, checked
    assert [(s["documents"], s["chunks"]) for s in cli("sources", "--store", str(store), "--json", cwd=tmp_path)[
        "sources"]] == [(CRASH_DOCS, CRASH_CHUNKS)]  # fmt: skip
    assert store_state(store, config) == _clean_state(folder, config, store, tmp_path, embedder)


def test_sigterm_then_kill_9_mid_run_each_leave_an_interrupted_run_and_the_next_run_converges(
    tmp_path, crash_source, embedder
):
    """One store through both ways a server dies mid-run (one test: each costs a server
    start, a run and a clean comparison ingest). SIGTERM: exit 0 at the next batch boundary,
    the run recorded interrupted, what it wrote committed. Then kill -9 during the run that
    continues it: on restart the dead owner's lock is taken over, the run is marked
    interrupted, and the next run converges to a clean ingest."""
    folder, config = crash_source
    store = tmp_path / "store"
    server, run_id = _start_and_wait_for_a_commit(store, config)
    try:
        signalled = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=60)
        took = time.monotonic() - signalled
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert code == 0, server.log()
    assert took < 30, f"ragline serve took {took:.1f}s to stop after SIGTERM"
    assert "Traceback" not in server.log()
    (stopped,) = cli("runs", "--json", "--store", str(store), cwd=tmp_path)["runs"]
    assert (stopped["id"], stopped["status"], stopped["trigger"]) == (run_id, "interrupted", "api")
    assert 0 < stopped["added"] < CRASH_DOCS and stopped["failed"] == 0 and stopped["deleted"] == 0, stopped
    with ragline.open(store, config_file=config) as rag:  # what it wrote is committed, nothing half-written
        assert all(result.consistent for result in rag.check())

    server, killed_id = _start_and_wait_for_a_commit(store, config, beyond=stopped["added"])
    server.process.kill()
    assert server.process.wait(10) == -signal.SIGKILL
    history = RunHistory(store)  # read before any restart: nobody recorded the end of the run
    assert history.get(killed_id).status == "running"
    history.close()

    restarted = start(store, "--config", str(config), env=ENV)  # the dead owner's lock is taken over
    try:
        owner = read_owner(store)
        assert owner is not None and owner.pid == restarted.process.pid and owner.address == restarted.url
        killed = run_of(restarted, killed_id)
        assert (killed["status"], killed["reason"]) == ("interrupted", "its process ended mid-run")
        assert killed["finished"] is not None
        committed = documents(restarted)
        assert stopped["added"] < committed < CRASH_DOCS

        rerun = finished_run(restarted, api(restarted, "POST", "/v1/ingest", json={"source": "crates"})["run_id"])
        assert (rerun["status"], rerun["added"], rerun["unchanged"], rerun["failed"]) == (
            "succeeded", CRASH_DOCS - committed, committed, 0), rerun  # fmt: skip
        assert [(r["trigger"], r["status"]) for r in api(restarted, "GET", "/v1/runs")["runs"]] == [
            ("api", "succeeded"), ("api", "interrupted"), ("api", "interrupted")]  # fmt: skip
    finally:
        assert restarted.stop() == 0, restarted.log()
    _assert_converged(store, folder, config, tmp_path, embedder)


def test_sigterm_right_after_the_ready_line_still_stops_cleanly_with_exit_0(tmp_path, model_server):
    """The ready line is printed before uvicorn installs its signal handlers: a supervisor's
    SIGTERM in between must still be a clean stop, not the default action (exit -15)."""
    config = write_config(tmp_path / "ragline.toml", model_server, sources=[], retrieval={"rerank": "none"})
    for _ in range(3):
        server = start(tmp_path / "store", "--config", str(config), env=ENV)
        assert server.stop(signal.SIGTERM, timeout=30) == 0, server.log()
    assert (tmp_path / "store" / LOCK_FILE).read_text() == ""  # closed: the lock file names no owner
