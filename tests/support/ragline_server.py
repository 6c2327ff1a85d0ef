"""Run a real `ragline serve` subprocess on 127.0.0.1 (any free port) for tests.

`served(...)` yields a `Served` with the URL the server printed and the process; on exit it
sends SIGTERM (unless the test already stopped it) and checks the exit status. `api`,
`finished_run` and `wait_for` talk to a running server.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"ragline serve: .* at (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    stderr: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.stderr)[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def serve_command(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ragline", "serve", "--store", str(store), "--port", "0", *args]


def start(store: Path, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 180.0) -> Served:
    return start_process(serve_command(store, *args), READY, env=env, startup_timeout=startup_timeout)


def start_process(command: list[str], ready_line: re.Pattern, *, env: dict[str, str] | None = None,
                  startup_timeout: float = 180.0) -> Served:  # fmt: skip
    """Start a long-running ragline command; returns once its stderr shows `ready_line`
    (whose first group becomes `Served.url`)."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def drain() -> None:  # nobody else reads the pipe: keep it from filling
        for line in process.stderr:
            lines.append(line)
            if not found and (match := ready_line.search(line)):
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    while not ready.wait(0.2):
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{' '.join(command[2:4])} did not start within {startup_timeout:.0f}s:\n{''.join(lines)[-4000:]}")
    if not found:
        process.wait(timeout=30)
        raise RuntimeError(f"{' '.join(command[2:4])} exited with {process.returncode}:\n{''.join(lines)[-4000:]}")
    return Served(found[0], process, lines)


@contextlib.contextmanager
def served(store: Path, *args: str, env: dict[str, str] | None = None, expect_exit: int | None = 0) -> Iterator[Served]:
    server = start(store, *args, env=env)
    try:
        yield server
    finally:
        code = server.stop()
        if expect_exit is not None:
            assert code == expect_exit, f"ragline serve exited {code}:\n{server.log()}"


# --- talking to a running server ---


def wait_for(condition, timeout: float, what: str, poll: float = 0.1):
    """`condition()`'s first truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return value


def api(server: Served, method: str, path: str, **kwargs) -> dict:
    response = httpx.request(method, f"{server.url}{path}", timeout=120, **kwargs)
    assert response.status_code in (200, 202), f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def run_of(server: Served, run_id: str) -> dict:
    return api(server, "GET", f"/v1/runs/{run_id}")


def finished_run(server: Served, run_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (run := run_of(server, run_id))["status"] != "running" and run, timeout, f"run {run_id}")
