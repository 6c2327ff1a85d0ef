"""One owner per store, between real processes: a second opener is told who holds the store
(and may wait for it) without touching the engine, whose probing damages an open writer; a
kill -9'd owner leaves a lock the OS already released. Points are written with fixed
4-dim vectors, so no process loads a model."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest
import qdrant_edge as qe
from conftest import ROOT

import ragline
from ragline.retrieval.ownership import LOCK_FILE, read_owner

# Holds the store through ragline with one flushed point (so the engine has written the
# tracker journals a probing load would delete), then writes and flushes another on a line.
OWNER = """
import sys, uuid
import ragline
from ragline.retrieval.store import StoredPoint

def put(store, n):
    point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"owner-{n}"))
    store.upsert([StoredPoint(id=point_id, vector=[1.0, float(n), 0.0, 0.0], payload={"document_id": "d", "text": "t"})])

rag = ragline.open(sys.argv[1])
rag.store.ensure_collection(4)
put(rag.store, 1)
rag.store._require_shard().flush()
print("ready", flush=True)
sys.stdin.readline()
put(rag.store, 2)
rag.close()
print("wrote", flush=True)
"""

# The same, through the engine alone: what a second `EdgeShard.load` does to its writer.
ENGINE_WRITER = """
import sys
import qdrant_edge as qe

config = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)})
shard = qe.EdgeShard.create(sys.argv[1], config)

def put(n):
    shard.update(qe.UpdateOperation.upsert_points([qe.Point(n, {"dense": [1.0, float(n), 0.0, 0.0]}, {"n": n})]))

put(1)
shard.flush()
print("ready", flush=True)
sys.stdin.readline()
put(2)
try:
    shard.flush()
except Exception as exc:
    print(f"flush failed: {exc}", flush=True)
else:
    print("flush ok", flush=True)
"""

# Opens the store with a timeout, and says how long the open waited.
WAITER = """
import sys, time
import ragline

rag = ragline.open(sys.argv[1], store={"open_timeout": 10})
print("opening", flush=True)
started = time.monotonic()
count = rag.store.count()
print(f"{time.monotonic() - started:.3f} {count}", flush=True)
rag.close()
"""


def _journals(shard) -> list:
    return sorted(shard.glob("segments/*/payload_storage/tracker_journal.dat"))


def _line(process: subprocess.Popen, timeout: float = 60) -> str:
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    assert readable, f"no output from the child within {timeout} s"
    line = process.stdout.readline()
    assert line, f"the child exited {process.wait()}: {process.stderr.read()}"
    return line.rstrip("\n")


@pytest.fixture
def spawn():
    """Start `python -c code args...` with piped stdin/stdout; kill what is left at the end."""
    children: list[subprocess.Popen] = []

    def start(code: str, *args: object) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            pipe.close()


def _release(owner: subprocess.Popen) -> None:
    """Let the owner write its second point and close; it fails if its writer was damaged."""
    owner.stdin.write("go\n")
    owner.stdin.flush()
    assert _line(owner) == "wrote"
    assert owner.wait(timeout=60) == 0, owner.stderr.read()


def test_a_second_opener_is_refused_by_name_and_the_owner_keeps_writing(tmp_path, spawn) -> None:
    store = tmp_path / "store"
    owner = spawn(OWNER, store)
    assert _line(owner) == "ready"
    journals = _journals(store / "qdrant")
    assert journals  # written by the owner's flush: what a probing load would delete

    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "ragline", "retrieve", "q", "--store", str(store), "--json"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    (line,) = run.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error["kind"] == "store_busy" and error["path"] == str(store)
    assert error["owner"]["pid"] == owner.pid and error["owner"]["command"] == "python"
    assert f"is already open: owned by PID {owner.pid} (python) since " in error["message"]
    (said,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert f"PID {owner.pid}" in said and said.endswith("set store.open_timeout to wait")  # one line
    assert elapsed < 15  # start-up only: it never waited
    assert all(journal.exists() for journal in journals)

    _release(owner)
    with ragline.open(store) as rag:
        assert rag.store.count() == 2


def test_open_timeout_waits_until_the_owner_closes(tmp_path, spawn) -> None:
    store = tmp_path / "store"
    owner = spawn(OWNER, store)
    assert _line(owner) == "ready"
    waiter = spawn(WAITER, store)
    assert _line(waiter) == "opening"
    time.sleep(1.0)

    _release(owner)

    waited, count = _line(waiter).split()
    assert waiter.wait(timeout=60) == 0, waiter.stderr.read()
    assert float(waited) >= 0.9 and count == "2"


def test_a_killed_owner_leaves_a_stale_record_that_is_taken_over_at_once(tmp_path, spawn) -> None:
    store = tmp_path / "store"
    owner = spawn(OWNER, store)
    assert _line(owner) == "ready"
    owner.kill()  # SIGKILL: no cleanup runs
    owner.wait()
    assert json.loads((store / LOCK_FILE).read_text())["pid"] == owner.pid  # the stale record is still there
    assert read_owner(store) is None  # ...but names a dead process

    started = time.monotonic()
    with ragline.open(store) as rag:  # open_timeout 0: it would fail if the lock were still held
        assert rag.store.count() == 1
        assert time.monotonic() - started < 5
        assert read_owner(store).pid == os.getpid()


def test_canary_a_second_engine_load_still_damages_the_open_writer(tmp_path, spawn) -> None:
    """Why ragline never asks the engine whether a shard is open (ragline/retrieval/ownership.py).
    Deterministic in qdrant-edge 0.9.0: the refused load deletes the writer's journal every time."""
    shard = tmp_path / "shard"
    writer = spawn(ENGINE_WRITER, shard)
    assert _line(writer) == "ready"
    journals = _journals(shard)
    assert journals, "the engine wrote no payload tracker journal on flush: this canary needs rewriting"

    try:
        qe.EdgeShard.load(str(shard)).close()
        second_load = "succeeded"
    except Exception as exc:  # noqa: BLE001 - the engine raises bare Exceptions
        second_load = f"refused ({exc})"
    journals_kept = all(journal.exists() for journal in journals)
    writer.stdin.write("go\n")
    writer.stdin.flush()
    flush = _line(writer)
    assert writer.wait(timeout=60) == 0, writer.stderr.read()

    damaged = not journals_kept or flush.startswith("flush failed")
    assert damaged, (
        "qdrant-edge no longer damages an open writer on a second load: the probe is harmless now; "
        f"revisit ragline/retrieval/ownership.py (second load {second_load}; writer's flush: {flush})"
    )
