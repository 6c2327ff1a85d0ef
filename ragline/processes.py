"""Whether a process recorded in a file (a store's owner, a run, a budget reservation) is
still running: the one check every crash-recovery path uses."""

from __future__ import annotations

import os
from pathlib import Path


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
