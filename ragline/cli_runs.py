"""`ragline runs` (the run history of configured sources) and `ragline schedule list` (when
each runs next). Both read the config and `runs.sqlite` only: no model, no store lock, so
they work while `ragline serve` owns the store. `ragline ingest` with no paths records its
runs here too (`ingest_recorded`)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli_output import ConfigOption, JsonOption, StoreOption, emit_json, err, fail, out, settings
from ragline.models import IngestError, IngestReport

if TYPE_CHECKING:
    from ragline.app import Rag
    from ragline.config import RaglineConfig
    from ragline.runs.history import RunHistory

schedule_app = typer.Typer(help="When configured sources run by themselves (under `ragline serve`).",
                           no_args_is_help=True)  # fmt: skip


def _history(config: RaglineConfig) -> RunHistory | None:
    """The store's run history (the replicas' with `[shared_state]`), or None when nothing
    ever ran in the store (nothing is created)."""
    from ragline.errors import SharedStateError, StoreError
    from ragline.runs.history import RUNS_FILE, RunHistory
    from ragline.state.url import shared_state_url

    url = shared_state_url(config)
    if url is None and not (Path(config.store.path) / RUNS_FILE).is_file():
        return None
    try:
        return RunHistory(Path(config.store.path), url=url)
    except (StoreError, SharedStateError) as exc:
        fail(exc)


def _time(moment: datetime | None) -> str:
    return moment.astimezone().isoformat(sep=" ", timespec="seconds") if moment else "-"


def runs(
    source: Annotated[str | None, typer.Option("--source", help="Only this source's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many runs.")] = 100,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent runs of configured sources, newest first: trigger, status, counts, errors."""
    history = _history(settings(store, config))
    if history is None:
        found = []
    else:
        try:
            history.interrupt_stale()  # a run whose process died is shown as what it is
            found = history.runs(source, limit)
        finally:
            history.close()
    if as_json:
        emit_json({"runs": [run.contract() for run in found]})
        return
    if not found:
        out.print("No runs yet. `ragline serve` runs scheduled sources; `ragline ingest` runs them all now.")
        return
    counts = ("added", "updated", "unchanged", "deleted", "failed")
    table = Table("started", "source", "trigger", "status", *counts, "finished")
    for run in found:
        status = f"{run.status} ({run.reason})" if run.reason else run.status
        numbers = (str(getattr(run, count)) for count in counts)
        table.add_row(
            _time(run.started), escape(run.source), run.trigger, escape(status), *numbers, _time(run.finished)
        )
    out.print(table)
    for run in found:
        for error in run.errors:
            err.print(f"[red]{escape(run.source)}[/] {escape(error)}")


@schedule_app.command("list")
def list_schedules(store: StoreOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Each scheduled or watched source with its next fire time and last run's status."""
    from ragline.schedule.scheduler import schedule_rows

    loaded = settings(store, config)
    history = _history(loaded)
    try:
        rows = schedule_rows(loaded.sources, history, time.time())
    except ValueError as exc:  # two sources of one name
        fail(exc, kind="config")
    finally:
        if history is not None:
            history.close()
    if as_json:
        emit_json({"schedules": rows})
        return
    if not rows:
        out.print("No schedules: give [[sources]] entries a `schedule`, `interval_seconds` or `watch = true`.")
        return
    table = Table("source", "schedule", "timezone", "next run", "last run")
    for row in rows:
        table.add_row(escape(row["source"]), escape(row["schedule"]), row["timezone"], row["next_run"] or "-",
                      row["last_run_status"] or "-")  # fmt: skip
    out.print(table)


def ingest_recorded(
    rag: Rag, paths: list[Path] | None, *, show_progress: bool, allow_mass_delete: bool | None,
    readers: list[str] | None = None,
) -> IngestReport:
    """`ragline ingest`. Without paths, a local store's configured sources run one by one
    through the source runner, each recorded as a `manual` run; the merged report is what
    `Rag.ingest()` returns for them. Paths, and a store `ragline serve` owns (its runs are
    recorded there), go to `rag.ingest` as they are."""
    from ragline.app import Rag
    from ragline.runs.history import RunHistory
    from ragline.runs.runner import SourceRunner
    from ragline.state.url import shared_state_url

    if paths or not rag.config.sources or not isinstance(rag, Rag):
        return rag.ingest(paths, show_progress=show_progress, allow_mass_delete=allow_mass_delete, readers=readers)
    history = RunHistory(rag.path, url=shared_state_url(rag.config))
    try:
        runner = SourceRunner(rag, history)
        total = IngestReport()
        for name in runner.names():
            run, report = runner.ingest(
                name, "manual", show_progress=show_progress, allow_mass_delete=allow_mass_delete
            )
            if report is None:
                error = f"not run: this source is running in another process (run {run.id} skipped)"
                report = IngestReport(failed=1, errors=[IngestError(document=name, error=error)])
            total.merge(report)
        return total
    finally:
        history.close()
