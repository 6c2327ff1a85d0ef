"""A throwaway PostgreSQL server on 127.0.0.1 from Debian's binaries, for the SQL connector
and shared-state tests. Postgres refuses to run as root, so as root it runs as the `postgres`
user (else `nobody`) via runuser, in a temp dir that user owns (pytest's tmp dirs sit under a
root-only 0700 folder). `postgres_server` skips the test, naming why, when it cannot start."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "s3cret-Pw_42"


def _pg_binary(name: str) -> str | None:
    candidates = [shutil.which(name), *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)]
    return next((c for c in candidates if c), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """Yields the server's SQLAlchemy URL (user ragline, password PASSWORD); stops it on exit."""
    binaries = {name: _pg_binary(name) for name in ("initdb", "pg_ctl", "postgres")}
    if not all(binaries.values()):
        pytest.skip(f"PostgreSQL binaries not found: {[n for n, b in binaries.items() if not b]}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("no PostgreSQL driver: pip install 'psycopg[binary]'")
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        runuser = shutil.which("runuser")
        if user is None or runuser is None:
            pytest.skip("running as root without a postgres/nobody user or runuser: postgres refuses to run as root")
        prefix = [runuser, "-u", user, "--"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip(f"running as root and cannot switch to user {user!r}: postgres refuses to run as root")
        base = Path(tempfile.mkdtemp(prefix="ragline-pg-"))
        account = pwd.getpwnam(user)
        os.chown(base, account.pw_uid, account.pw_gid)
    else:
        base = tmp_path_factory.mktemp("postgres")
    data, log, sockets, pwfile = base / "data", base / "server.log", base / "sockets", base / "pwfile"

    def run(*args: str, check: bool = True) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}{server_log}")

    try:
        run("mkdir", str(sockets))
        run("sh", "-c", f"printf %s '{PASSWORD}' > {pwfile}")
        run(
            binaries["initdb"],
            "-D",
            str(data),
            "-U",
            "ragline",
            f"--pwfile={pwfile}",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
        run(binaries["pg_ctl"], "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start")
        yield f"postgresql+psycopg://ragline:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
