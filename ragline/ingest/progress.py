"""The rich progress bar of a long ingest (on stderr, so `--json` stdout stays one object)."""

from __future__ import annotations

from contextlib import nullcontext

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


def ingest_progress(show: bool):
    if not show:
        return nullcontext()
    return Progress(
        TextColumn("[bold]ingest[/] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed} docs · {task.fields[chunks]} chunks"),
        TextColumn("· {task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
