"""Named crash points for crash-consistency tests: `RAGLINE_FAILPOINTS=name@N` makes the
process SIGKILL itself the Nth time it passes `name` (N defaults to 1); `name@N:stop`
makes it SIGSTOP itself instead, a hang that only a signal from outside ends.

The ingest pipeline marks each step between two durable writes with a failpoint, so tests
can kill a real ingest process at each of them and check that a re-run converges. Unset,
a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, list] = {}  # name -> [passes left, signal]
for _spec in filter(None, os.environ.get("RAGLINE_FAILPOINTS", "").split(",")):
    _point, _, _action = _spec.strip().partition(":")
    _name, _, _count = _point.partition("@")
    _ARMED[_name] = [int(_count or 1), signal.SIGSTOP if _action == "stop" else signal.SIGKILL]


def failpoint(name: str) -> None:
    if name not in _ARMED:
        return
    _ARMED[name][0] -= 1
    if _ARMED[name][0] <= 0:
        os.kill(os.getpid(), _ARMED[name][1])
