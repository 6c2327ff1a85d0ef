"""The server's status page at `/`: each source with its schedule, last and next run and the
last run's errors, the recent runs, and the recent traces linking to their waterfall pages.
Self-contained (inline CSS, no script, nothing fetched); every text is escaped."""

from __future__ import annotations

from html import escape

from ragline.tracing.store import TraceStore

RECENT = 20
_CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}.succeeded{color:#1a7f37}
.failed,.interrupted{color:#cf222e}.partial,.skipped{color:#9a6700}.errors{color:#cf222e;font-size:12px}"""


def _cell(value) -> str:
    return f"<td>{escape('-' if value is None else str(value))}</td>"


def _status(status: str | None) -> str:
    return f"<td class='{escape(status or '')}'>{escape(status or '-')}</td>"


def _sources(service) -> str:
    schedules = {s["source"]: s for s in service.scheduler.schedules()}
    rows = []
    for name in service.runner.names():
        last = service.history.last(name)
        schedule = schedules.get(name, {})
        errors = "<br>".join(escape(e) for e in (last.errors if last else [])[:5])
        rows.append(f"<tr><td>{escape(name)}</td>{_cell(schedule.get('schedule'))}{_cell(last.finished if last else None)}"
                    f"{_status(last.status if last else None)}{_cell(schedule.get('next_run'))}"
                    f"<td class='errors'>{errors}</td></tr>")  # fmt: skip
    if not rows:
        return "<p>No [[sources]] configured.</p>"
    head = "<tr><th>source</th><th>schedule</th><th>last run</th><th>status</th><th>next run</th><th>errors</th></tr>"
    return f"<table id='sources'>{head}{''.join(rows)}</table>"


def _runs(service) -> str:
    runs = service.history.runs(limit=RECENT)
    if not runs:
        return "<p>No runs yet.</p>"
    rows = "".join(
        f"<tr>{_cell(r.id)}{_cell(r.source)}{_cell(r.trigger)}{_status(r.status)}{_cell(r.started)}{_cell(r.finished)}"
        f"{_cell(r.added)}{_cell(r.updated)}{_cell(r.unchanged)}{_cell(r.deleted)}{_cell(r.failed)}</tr>"
        for r in runs
    )
    head = ("<tr><th>run</th><th>source</th><th>trigger</th><th>status</th><th>started</th><th>finished</th>"
            "<th>added</th><th>updated</th><th>unchanged</th><th>deleted</th><th>failed</th></tr>")  # fmt: skip
    return f"<table id='runs'>{head}{rows}</table>"


def _traces(service) -> str:
    try:
        reader = TraceStore.in_store(service.rag.path)
    except FileNotFoundError:
        return "<p>No traces recorded yet.</p>"
    try:
        summaries = reader.list_traces(RECENT)
    finally:
        reader.close()
    if not summaries:
        return "<p>No traces recorded yet.</p>"
    rows = "".join(
        f"<tr><td><a href='/traces/{escape(t.trace_id)}'>{escape(t.trace_id[:12])}</a></td>{_cell(t.root_name)}"
        f"{_cell(f'{t.start:%Y-%m-%d %H:%M:%S}')}{_cell(f'{t.duration_ms:.0f} ms')}{_cell(f'{t.cost_usd:.6f}')}"
        f"{_status('failed' if t.error else 'succeeded')}</tr>"
        for t in summaries
    )
    head = "<tr><th>trace</th><th>root</th><th>start (UTC)</th><th>duration</th><th>cost (USD)</th><th>status</th></tr>"
    return f"<table id='traces'>{head}{rows}</table>"


def status_page(service) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ragline serve</title>"
        f"<style>{_CSS}</style></head><body><h1>ragline serve</h1>"
        f"<p>ragline {escape(service.version)} · running: {escape(', '.join(service.runner.running()) or 'nothing')}</p>"
        f"<h2>Sources</h2>{_sources(service)}<h2>Recent runs</h2>{_runs(service)}"
        f"<h2>Recent traces</h2>{_traces(service)}</body></html>"
    )
