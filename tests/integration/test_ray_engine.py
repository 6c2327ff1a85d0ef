"""The Ray engine (`ingest.engine = "ray"`): parsing on Ray tasks and embedding on Ray
actors store exactly what the local engine stores; a killed ingest resumes from its last
committed batch; a hung parse costs its document; an unreachable cluster is a clear error.

Real Ray clusters on this machine: one from `ray start --head` (connected to with
--address), and the local cluster an ingest starts for itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_server import free_port
from ray_cluster import head_node, need_ray, ray_processes

import ragline

need_ray()

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
CLI = [sys.executable, "-m", "ragline"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def _stored(path: Path) -> dict[str, dict]:
    with ragline.open(path) as rag:
        return {point.id: point.payload for point in rag.store.iter_points()}


def _ingest(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "ingest", *args, "--json"], cwd=ROOT, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, embedder) -> tuple[Path, dict]:
    """The samples ingested by the local engine, and its report."""
    path = tmp_path_factory.mktemp("local")
    with ragline.open(path, embedder=embedder) as rag:
        report = rag.ingest(SAMPLES)
    return path, report.model_dump(mode="json")


@pytest.fixture(scope="module")
def cluster() -> str:
    with head_node() as address:
        yield address


def test_a_cluster_stores_what_the_local_engine_stores(local_store, cluster, tmp_path):
    local_path, local_report = local_store
    done = _ingest(str(SAMPLES), "--store", str(tmp_path / "ray"), "--engine", "ray", "--address", cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # the one JSON object on stdout, whatever Ray logs
    assert report == local_report
    assert _stored(tmp_path / "ray") == _stored(local_path)  # same point ids, texts, headers, pages, readers


def test_a_killed_ray_ingest_resumes_from_its_last_committed_batch(local_store, cluster, tmp_path):
    local_path, local_report = local_store
    store = tmp_path / "ray"
    small_batches = {"RAGLINE_INGEST__BATCH_CHUNKS": "2", "RAGLINE_INGEST__ENGINE": "ray", "RAGLINE_RAY__ADDRESS": cluster}
    killed = _ingest(str(SAMPLES), "--store", str(store), env={**small_batches,
                                                                "RAGLINE_FAILPOINTS": "ingest.after_commit@2"})
    assert killed.returncode == -9, killed.stderr[-3000:]

    partial = _stored(store)
    assert 0 < len(partial) < len(_stored(local_path))
    resumed = json.loads(_ingest(str(SAMPLES), "--store", str(store), env=small_batches).stdout)
    committed = {point["document_id"] for point in partial.values()}
    assert resumed["added"] == local_report["added"] - len(committed)  # the committed documents are not redone
    assert _stored(store) == _stored(local_path)  # no duplicate, nothing missing
    with ragline.open(store) as rag:
        assert all(result.consistent for result in rag.check())


def test_a_parse_that_hangs_on_ray_is_cancelled(tmp_path, embedder, monkeypatch):
    """On the local cluster an ingest starts for itself (its workers inherit the failpoint)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("security-policy.pdf", "employee-handbook.md"):
        (docs / name).write_bytes((SAMPLES / name).read_bytes())
    monkeypatch.setenv("RAGLINE_FAILPOINTS", "parse.worker:stop")  # every Ray worker hangs on its first document
    settings = {"engine": "ray", "parse_timeout_seconds": 2}
    running = set(ray_processes())  # the module's cluster
    with ragline.open(tmp_path / "store", embedder=embedder, ingest=settings) as rag:
        report = rag.ingest(docs)
        assert (report.added, report.failed) == (0, 2)
        for error in report.errors:
            assert "parsing took longer than 2 s (ingest.parse_timeout_seconds); the Ray task was cancelled" in error.error
        assert rag.store.count() == 0
    assert set(ray_processes()) == running  # closing the store stopped its local cluster


def test_an_unreachable_cluster_is_a_clear_error(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = _ingest(str(SAMPLES), "--store", str(tmp_path / "store"), "--engine", "ray", "--address", address)
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "cluster_unreachable"
    assert f"no Ray cluster answers at {address}" in error["message"]
    assert time.monotonic() - started < 60  # not Ray's minutes of retries

