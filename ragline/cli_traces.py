"""`ragline traces`: read back the traces a store recorded (list, show as a tree, export).

`--json` prints exactly one JSON object on stdout, like the rest of the CLI.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragline.access.principals import AccessError, Viewer
from ragline.access.traces import check_trace_readable, trace_readable
from ragline.cli_output import AsOption, ConfigOption, GroupOption, StoreOption, emit_json, fail, principals, settings
from ragline.tracing.render import trace_html, trace_tree
from ragline.tracing.store import Trace, TraceNotFound, TraceStore, trace_json

traces_app = typer.Typer(help="Recorded query traces: list, show as a tree, export as HTML.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

MAX_LIST = 10_000  # far more than a table shows; bigger limits only overflow SQLite's integers
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
TraceId = Annotated[str, typer.Argument(help="Trace id, or a unique prefix of one.")]


def _viewer(store: Path | None, config: Path | None, as_user: str | None, groups: list[str] | None) -> Viewer:
    """Who asks to see traces: with [access] enabled, a trace shows only to callers who may
    read every chunk in it (`ragline.access.traces`)."""
    from ragline.access.policy import AccessPolicy

    try:
        return AccessPolicy(settings(store, config).access).viewer(principals(as_user, groups))
    except AccessError as exc:
        fail(exc)


def _store(store: Path | None, config: Path | None) -> TraceStore:
    directory = Path(settings(store, config).store.path)
    try:
        return TraceStore.in_store(directory)
    except FileNotFoundError as exc:
        fail(exc, kind="not_found")
    except sqlite3.Error as exc:
        fail(f"{directory / 'traces.sqlite'} cannot be read ({exc}); move it away to start a new trace store", kind="store")


def _load(store: Path | None, config: Path | None, trace_id: str, viewer: Viewer) -> Trace:
    reader = _store(store, config)
    try:
        trace = reader.load(trace_id)
        check_trace_readable(trace, viewer)
        return trace
    except TraceNotFound as exc:
        fail(exc, kind="not_found")
    except AccessError as exc:
        fail(exc)
    finally:
        reader.close()


@traces_app.command("list")
def list_traces(
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIST, help="How many traces, newest first.")] = 20,
    as_user: AsOption = None,
    groups: GroupOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent traces with duration, tokens, cost and whether anything failed (with --as:
    those that user may see)."""
    viewer = _viewer(store, config, as_user, groups)
    reader = _store(store, config)
    try:
        summaries = reader.list_traces(limit)
        if viewer.restricted:
            summaries = [s for s in summaries if trace_readable(reader.load(s.trace_id), viewer)]
    finally:
        reader.close()
    if as_json:
        emit_json({"traces": [s.model_dump(mode="json") for s in summaries]})
        return
    table = Table("trace id", "root", "start (UTC)", "duration", "tokens", "cost $", "status")
    for s in summaries:
        table.add_row(
            s.trace_id, escape(s.root_name), f"{s.start:%Y-%m-%d %H:%M:%S}", f"{s.duration_ms:.1f} ms",
            str(s.total_tokens), f"{s.cost_usd:.6f}", "[red]error[/]" if s.error else "ok",
        )  # fmt: skip
    out.print(table)


@traces_app.command()
def show(
    trace_id: TraceId, as_user: AsOption = None, groups: GroupOption = None, store: StoreOption = None,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """One trace as a tree of spans with timings, tokens and cost."""
    trace = _load(store, config, trace_id, _viewer(store, config, as_user, groups))
    if as_json:
        emit_json(trace_json(trace))
        return
    out.print(trace_tree(trace))


@traces_app.command()
def export(
    trace_id: TraceId,
    html: Annotated[bool, typer.Option("--html/--json", help="A standalone HTML waterfall page, or the JSON of `show --json`.")] = True,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; '-' for stdout (default: trace-ID.html/.json).")] = None,
    as_user: AsOption = None,
    groups: GroupOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Write one trace to a file: an HTML waterfall to open in a browser, or JSON."""
    trace = _load(store, config, trace_id, _viewer(store, config, as_user, groups))
    body = trace_html(trace) if html else json.dumps(trace_json(trace), indent=2)
    if output == Path("-"):
        print(body)
        return
    output = output or Path(f"trace-{trace.summary.trace_id}.{'html' if html else 'json'}")
    output.write_text(body, encoding="utf-8")
    err.print(f"wrote {escape(str(output))}")
