"""Traces in SQLite next to the index: written by a span exporter, read back by the CLI.

One row per finished span with its attributes and events as JSON. Summaries (tokens, cost)
are sums over the LLM-call spans (`gen_ai.operation.name` set), so the query span never
double-counts what its chat spans already carry.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pydantic import BaseModel, Field

from ragline.tracing.config import TRACES_FILE

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status TEXT NOT NULL, status_message TEXT, attributes TEXT NOT NULL, events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id));
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
"""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.executescript(_SCHEMA)
    return db


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _row(span: ReadableSpan) -> tuple:
    events = [
        {"name": e.name, "time_ns": e.timestamp, "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()}}
        for e in span.events
    ]
    return (
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
        f"{span.parent.span_id:016x}" if span.parent else None,
        span.name,
        span.kind.name,
        span.start_time,
        span.end_time,
        span.status.status_code.name,
        span.status.description,
        json.dumps({k: _plain(v) for k, v in (span.attributes or {}).items()}),
        json.dumps(events),
    )


class SqliteSpanExporter(SpanExporter):
    """Writes finished spans to `traces.sqlite`; safe across threads and processes (WAL).
    Opening it drops traces that started more than `retention_days` ago (None: keep all),
    so a store queried for years does not grow without bound."""

    def __init__(self, path: Path, retention_days: float | None = None):
        self._lock = threading.Lock()
        self._db = _connect(path)
        if retention_days:
            cutoff_ns = int((time.time() - retention_days * 86400) * 1e9)
            self._db.execute(
                "DELETE FROM spans WHERE trace_id IN (SELECT DISTINCT trace_id FROM spans WHERE start_ns < ?)",
                (cutoff_ns,),
            )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?)", [_row(s) for s in spans])
        except sqlite3.Error:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._db.close()


class SpanNode(BaseModel):
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = Field(description="UNSET, OK or ERROR.")
    status_message: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    children: list[SpanNode] = Field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def walk(self, depth: int = 0):
        """(depth, node) for this span and its descendants, depth first, in start order."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


class TraceSummary(BaseModel):
    trace_id: str
    root_name: str
    start: datetime
    duration_ms: float
    span_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    error: bool


class Trace(BaseModel):
    """One trace as a forest: normally one root; more when parents were never exported."""

    summary: TraceSummary
    roots: list[SpanNode]

    def spans(self) -> list[tuple[int, SpanNode]]:
        return [item for root in self.roots for item in root.walk()]


class TraceNotFound(LookupError):
    pass


_LLM = "json_extract(attributes, '$.\"gen_ai.operation.name\"') IS NOT NULL"
_SUMMARY = f"""
SELECT trace_id,
    (SELECT name FROM spans r WHERE r.trace_id = s.trace_id ORDER BY parent_id IS NOT NULL, start_ns LIMIT 1),
    MIN(start_ns), MAX(end_ns), COUNT(*),
    SUM(CASE WHEN {_LLM} THEN COALESCE(json_extract(attributes, '$."gen_ai.usage.input_tokens"'), 0) ELSE 0 END),
    SUM(CASE WHEN {_LLM} THEN COALESCE(json_extract(attributes, '$."gen_ai.usage.output_tokens"'), 0) ELSE 0 END),
    SUM(CASE WHEN {_LLM} THEN COALESCE(json_extract(attributes, '$."ragline.cost_usd"'), 0) ELSE 0 END),
    MAX(status = 'ERROR')
FROM spans s
"""


def _summary(row: tuple) -> TraceSummary:
    trace_id, root, start_ns, end_ns, count, tokens_in, tokens_out, cost, error = row
    return TraceSummary(
        trace_id=trace_id,
        root_name=root,
        start=datetime.fromtimestamp(start_ns / 1e9, UTC),
        duration_ms=(end_ns - start_ns) / 1e6,
        span_count=count,
        input_tokens=int(tokens_in),
        output_tokens=int(tokens_out),
        total_tokens=int(tokens_in + tokens_out),
        cost_usd=float(cost),
        error=bool(error),
    )


class TraceStore:
    """Reads `traces.sqlite`: recent traces, and one trace as a span tree."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"no traces recorded yet ({path} does not exist)")
        self._db = _connect(path)

    @classmethod
    def in_store(cls, store_dir: Path) -> TraceStore:
        return cls(Path(store_dir) / TRACES_FILE)

    def close(self) -> None:
        self._db.close()

    def list_traces(self, limit: int = 20) -> list[TraceSummary]:
        rows = self._db.execute(f"{_SUMMARY} GROUP BY trace_id ORDER BY MIN(start_ns) DESC LIMIT ?", (limit,))
        return [_summary(row) for row in rows]

    def resolve(self, prefix: str) -> str:
        """The full trace id for an id or a unique prefix of one."""
        ids = [r[0] for r in self._db.execute(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? LIMIT 2",
            (prefix.lower(), prefix.lower() + "g"),
        )]  # fmt: skip
        if len(ids) != 1:
            raise TraceNotFound(f"no trace {prefix!r}" if not ids else f"trace id prefix {prefix!r} is ambiguous")
        return ids[0]

    def load(self, trace_id: str) -> Trace:
        trace_id = self.resolve(trace_id)
        rows = self._db.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,)).fetchall()
        nodes = [
            SpanNode(
                trace_id=r[0], span_id=r[1], parent_id=r[2], name=r[3], kind=r[4], start_ns=r[5], end_ns=r[6],
                status=r[7], status_message=r[8], attributes=json.loads(r[9]), events=json.loads(r[10]),
            )
            for r in rows
        ]  # fmt: skip
        by_id = {node.span_id: node for node in nodes}
        roots = []
        for node in nodes:
            parent = by_id.get(node.parent_id) if node.parent_id else None
            (parent.children if parent else roots).append(node)
        summary = _summary(self._db.execute(f"{_SUMMARY} WHERE trace_id = ? GROUP BY trace_id", (trace_id,)).fetchone())
        return Trace(summary=summary, roots=roots)


def _node_json(node: SpanNode) -> dict[str, Any]:
    data = node.model_dump(mode="json", exclude={"children"})
    data["duration_ms"] = node.duration_ms
    data["children"] = [_node_json(child) for child in node.children]
    return data


def trace_json(trace: Trace) -> dict[str, Any]:
    return {"summary": trace.summary.model_dump(mode="json"), "spans": [_node_json(root) for root in trace.roots]}
