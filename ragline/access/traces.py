"""Who may read a recorded trace: only a caller who may read every chunk it holds.

A trace keeps the retrieved chunks' ids and readers (`ragline.tracing.spans.record_hits`)
and, with content capture, their text and the answer. A restricted caller sees a trace only
when every recorded chunk is readable to it; a trace that names chunks without their
readers (recorded before access control) is shown to unrestricted callers only.
"""

from __future__ import annotations

import json
from typing import Any

from ragline.access.principals import AccessError, Viewer
from ragline.tracing.store import Trace

_IDS, _READERS = ".document_ids", ".readers"


def trace_readable(trace: Trace, viewer: Viewer) -> bool:
    if not viewer.restricted:
        return True
    for _, span in trace.spans():
        for key, ids in span.attributes.items():
            if not key.endswith(_IDS):
                continue
            readers = span.attributes.get(key[: -len(_IDS)] + _READERS)
            if not isinstance(readers, list) or len(readers) != len(ids):
                return False
            if not all(viewer.may_read(_decoded(entry)) for entry in readers):
                return False
    return True


def check_trace_readable(trace: Trace, viewer: Viewer) -> None:
    """AccessError unless `viewer` may read every chunk `trace` holds."""
    if not trace_readable(trace, viewer):
        raise AccessError(
            f"trace {trace.summary.trace_id} holds chunks the caller may not read: it is shown only to callers "
            "who may read every chunk in it, or to an [access] admin"
        )


def _decoded(entry: Any) -> list[str] | None:
    try:
        value = json.loads(entry) if isinstance(entry, str) else None
    except ValueError:
        return None
    return value if isinstance(value, list) else None
