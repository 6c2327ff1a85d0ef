"""`owner.lock`: who holds a store, how long a second opener waits, and what it is told.

In one process: flocks taken through separate opens conflict there as they do across
processes (tests/integration/test_store_ownership.py has the real processes)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import qdrant_edge as qe
from pydantic import ValidationError

import ragline
from ragline.errors import StoreBusyError
from ragline.retrieval.config import StoreConfig
from ragline.retrieval.edge_store import EdgeStore
from ragline.retrieval.ownership import LOCK_FILE, OwnerRecord, StoreOwnership, default_command, read_owner

NO_SUCH_PID = 2**22 + 1  # above Linux's largest pid_max


def test_the_record_names_the_owner_and_advertise_rewrites_it_in_place(tmp_path) -> None:
    with StoreOwnership(tmp_path, command="ragline serve") as owner:
        record = read_owner(tmp_path)
        assert record == OwnerRecord(os.getpid(), "ragline serve", owner.record.started)
        assert abs(datetime.now(UTC) - datetime.fromisoformat(record.started)).total_seconds() < 60
        inode = (tmp_path / LOCK_FILE).stat().st_ino

        owner.advertise("http://127.0.0.1:8000")

        assert read_owner(tmp_path).address == "http://127.0.0.1:8000"
        assert (tmp_path / LOCK_FILE).stat().st_ino == inode  # the locked file itself, not a replacement
        with pytest.raises(StoreBusyError) as raised:
            StoreOwnership(tmp_path)
        assert str(raised.value) == (
            f"store {tmp_path} is already open: owned by PID {os.getpid()} (ragline serve at "
            f"http://127.0.0.1:8000, this process) since {record.started}; stop that process, or route to it, "
            "or set store.open_timeout to wait"
        )
        assert raised.value.owner == read_owner(tmp_path) and raised.value.path == tmp_path
        assert isinstance(raised.value, RuntimeError)
    assert read_owner(tmp_path) is None  # a clean close leaves no owner behind
    StoreOwnership(tmp_path).close()


def test_open_timeout_waits_for_the_owner_then_gives_up(tmp_path) -> None:
    holder = StoreOwnership(tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreBusyError, match=r"already open: .*raise store\.open_timeout \(waited 0\.3 s\)"):
        StoreOwnership(tmp_path, open_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2

    threading.Timer(0.3, holder.close).start()
    started = time.monotonic()
    with StoreOwnership(tmp_path, open_timeout=10):
        assert 0.25 <= time.monotonic() - started < 3


@pytest.mark.parametrize("content", [
    json.dumps({"pid": NO_SUCH_PID, "command": "ragline serve", "started": "2020-01-01T00:00:00+00:00"}),
    "{torn", "", json.dumps({"pid": "x"}),
])  # fmt: skip
def test_a_dead_or_unreadable_record_is_no_owner_and_is_taken_over(tmp_path, content) -> None:
    (tmp_path / LOCK_FILE).write_text(content)
    assert read_owner(tmp_path) is None
    with StoreOwnership(tmp_path, command="python"):
        assert read_owner(tmp_path).pid == os.getpid()


def test_no_lock_file_is_no_owner(tmp_path) -> None:
    assert read_owner(tmp_path) is None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_lock_is_not_inherited_by_child_processes(tmp_path) -> None:
    with StoreOwnership(tmp_path):
        fds = [int(fd) for fd in os.listdir("/proc/self/fd") if _target(fd) == str(tmp_path / LOCK_FILE)]
        assert len(fds) == 1 and not os.get_inheritable(fds[0])


def _target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@pytest.mark.parametrize(("argv", "command"), [
    (["/venv/bin/ragline", "serve", "--port", "8000"], "ragline serve"),
    (["/src/ragline/__main__.py", "retrieve", "a question"], "ragline retrieve"),
    (["-c"], "python"),
    (["/venv/bin/pytest", "tests/unit"], "pytest"),
])  # fmt: skip
def test_the_default_command_names_the_program_not_its_arguments(monkeypatch, argv, command) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    assert default_command() == command


def test_an_edge_store_holds_its_store_directory_until_closed(tmp_path) -> None:
    store = EdgeStore(tmp_path / "qdrant")
    store.ensure_collection(4)
    assert read_owner(tmp_path).pid == os.getpid()
    with pytest.raises(StoreBusyError, match=rf"store {tmp_path} is already open: owned by PID {os.getpid()} "):
        EdgeStore(tmp_path / "qdrant")
    store.close()
    assert read_owner(tmp_path) is None
    EdgeStore(tmp_path / "qdrant").close()


def test_a_shard_held_outside_ragline_is_busy_too(tmp_path) -> None:
    """The engine's own lock is the fallback: it costs the holder its tracker journal, but the
    opener still gets the same error, and the refused open releases `owner.lock`."""
    config = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)})
    outsider = qe.EdgeShard.create(str(tmp_path / "qdrant"), config)
    try:
        with pytest.raises(StoreBusyError, match="already open: owned by a process that left no owner record"):
            EdgeStore(tmp_path / "qdrant")
        StoreOwnership(tmp_path).close()
    finally:
        outsider.close()


def test_store_open_timeout_is_configured_and_reaches_the_store(tmp_path) -> None:
    with pytest.raises(ValidationError, match="open_timeout"):
        StoreConfig(open_timeout=-1)
    with StoreOwnership(tmp_path), ragline.open(tmp_path, store={"open_timeout": 0.2}) as rag:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"waited 0\.2 s"):
            rag.store.count()
        assert time.monotonic() - started >= 0.2
