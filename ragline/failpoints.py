"""Named crash points for crash-consistency tests: `RAGLINE_FAILPOINTS=name@N` makes the
process SIGKILL itself the Nth time it passes `name` (N defaults to 1).

The ingest pipeline marks each step between two durable writes with a failpoint, so tests
can kill a real ingest process at each of them and check that a re-run converges. Unset,
a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
for _spec in filter(None, os.environ.get("RAGLINE_FAILPOINTS", "").split(",")):
    _name, _, _count = _spec.strip().partition("@")
    _ARMED[_name] = int(_count or 1)


def failpoint(name: str) -> None:
    if name not in _ARMED:
        return
    _ARMED[name] -= 1
    if _ARMED[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
