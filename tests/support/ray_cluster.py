"""A Ray head node for tests, started with the `ray` command of the ray extra: a cluster
that outlives the ingests connecting to it, as a user's would. Ray's processes reach each
other at this machine's own address (Ray replaces 127.0.0.1 by it); nothing leaves it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import free_port


def need_ray():
    return pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ragline[ray]')")


def ray_processes() -> list[int]:
    """Running Ray daemons (raylet, GCS) on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            name = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if name in ("raylet", "gcs_server") and state != "Z":
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def head_node(cpus: int = 1) -> Iterator[str]:
    """`ray start --head` on a free port; yields 127.0.0.1:PORT; `ray stop` after."""
    need_ray()
    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray, "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, env=env, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
