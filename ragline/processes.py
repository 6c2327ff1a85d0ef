"""How processes sharing a store coordinate: exclusive lock files (an `flock` the OS drops
when its holder dies, kill -9 included), and whether a process recorded in a file (a
store's owner, a run, a budget reservation) is still running."""

from __future__ import annotations

import fcntl
import os
import socket
from functools import cache
from pathlib import Path

# Never inherited by child processes, and never opened through a planted symlink.
LOCK_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def open_lock_file(path: Path) -> int:
    return os.open(path, LOCK_FILE_FLAGS, 0o644)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False while another holder has it
    (in another process, or through another open of the file in this one)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie, killed but not yet reaped, is not)."""
    if pid <= 0:  # kill(0) and kill(-1) would address process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # no /proc: trust kill()
        return True
    return state != "Z"


@cache
def process_space() -> str:
    """Where a pid means this process's pid: the host, its boot, and the pid namespace
    (containers on one kernel each have their own)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{boot}/{namespace}"[:300]


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
