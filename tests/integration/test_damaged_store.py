"""Damaged store files get one clear error naming the file and what to do, never a raw
traceback; a damaged trace store never blocks a query. Real store files, damaged for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

import ragline
from ragline.errors import StoreError
from ragline.llm.fake import FakeProvider

QUESTION = "How many days of paid leave do new employees get?"
GARBAGE = os.urandom(4096)


def _open(store, embedder, **settings):
    return ragline.open(store, embedder=embedder, provider=FakeProvider(["25 days [1]."]), **settings)


def test_a_damaged_ledger_names_the_file_and_the_way_back(samples_store, embedder) -> None:
    (samples_store / "ledger.sqlite").write_bytes(GARBAGE)
    for stale in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (samples_store / stale).unlink(missing_ok=True)
    with _open(samples_store, embedder) as rag, pytest.raises(StoreError) as raised:
        rag.sources()
    message = str(raised.value)
    assert "ledger.sqlite" in message and "not a usable SQLite database" in message and "ragline ingest" in message


def test_a_damaged_trace_store_never_blocks_a_query(samples_store, embedder, caplog) -> None:
    (samples_store / "traces.sqlite").write_bytes(GARBAGE)
    with caplog.at_level("WARNING", logger="ragline.tracing.setup"), _open(samples_store, embedder) as rag:
        hits = rag.retrieve(QUESTION, top_k=2)
        answer = rag.query(QUESTION)
    assert hits and answer.text == "25 days [1]." and answer.sources
    assert "traces.sqlite" in caplog.text and "move the file away" in caplog.text


@pytest.mark.parametrize("damaged", ["edge_config.json", "segments/*/segment.json"])
def test_a_damaged_index_names_its_folder_and_ingest_rebuilds_it(samples_store, embedder, damaged) -> None:
    (target,) = (samples_store / "qdrant").glob(damaged)
    target.write_bytes(b"\x00not json")
    with _open(samples_store, embedder) as rag, pytest.raises(StoreError) as raised:
        rag.retrieve(QUESTION)
    assert "qdrant" in str(raised.value) and "ragline ingest" in str(raised.value)
    shutil.move(samples_store / "qdrant", samples_store.parent / "damaged-index")  # as the message says
    with _open(samples_store, embedder) as rag:
        assert rag.ingest(ROOT / "samples").reconciled > 0
        assert rag.retrieve(QUESTION, top_k=1)


def test_a_store_path_that_is_a_file(tmp_path, embedder) -> None:
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("I am a file")
    with _open(not_a_folder, embedder) as rag, pytest.raises(StoreError) as raised:
        rag.retrieve(QUESTION)
    assert str(not_a_folder) in str(raised.value) and "store.path" in str(raised.value)


def test_a_read_only_store_is_one_line_naming_the_file(samples_store, tmp_path) -> None:
    """The CLI, as a process without root's permission overrides (setpriv)."""
    store = tmp_path / "read-only"
    shutil.copytree(samples_store, store)
    for path in [store, *store.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    command = [sys.executable, "-m", "ragline", "sources", "--store", str(store), "--json"]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    try:
        run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    error = json.loads(run.stdout)["error"]
    assert error["kind"] == "store" and error["path"].endswith("ledger.sqlite") and "cannot be written" in error["message"]
