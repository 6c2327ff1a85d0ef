"""`ragline pipeline`: run, show and list query pipelines (files in `[pipelines] dir`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape

from ragline.cli_output import (
    AsOption,
    ConfigOption,
    GroupOption,
    JsonOption,
    RecordOption,
    ReplayOption,
    StoreOption,
    answer_json,
    emit_json,
    opened,
    out,
    principals,
    print_sources,
    replay_overrides,
)
from ragline.pipelines.pipeline import SUFFIXES, Pipeline, load_pipeline

pipeline_app = typer.Typer(help="Query pipelines: typed steps defined in YAML, TOML or JSON.", no_args_is_help=True)

FileOption = Annotated[
    Path | None, typer.Option("--file", exists=True, dir_okay=False, help="Run this pipeline file instead of NAME.")
]


@pipeline_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="A pipeline in [pipelines] dir (NAME.yaml ...), or 'default'.")],
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    file: FileOption = None,
    record: RecordOption = None,
    replay: ReplayOption = None,
    as_user: AsOption = None,
    groups: GroupOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question with a pipeline; `--json` has `query`'s shape."""
    caller = principals(as_user, groups)
    with opened(store, config, **replay_overrides(record, replay)) as rag:
        answer = rag.run_pipeline(load_pipeline(file) if file else name, question, principals=caller)
    if as_json:
        emit_json(answer_json(answer))
        return
    out.print(escape(answer.text))
    print_sources(answer)


@pipeline_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A pipeline name, or 'default'.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a pipeline as the YAML (or JSON) it loads from."""
    with opened(store, config) as rag:
        pipeline: Pipeline = rag.get_pipeline(name)
    if as_json:
        emit_json(pipeline.to_dict())
    else:
        out.print(escape(yaml.safe_dump(pipeline.to_dict(), sort_keys=False)), end="")


@pipeline_app.command("list")
def list_pipelines(store: StoreOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The pipelines in `[pipelines] dir`, plus the built-in 'default'."""
    with opened(store, config) as rag:
        folder = Path(rag.config.pipelines.dir)
        files = sorted(p for s in SUFFIXES for p in folder.glob(f"*{s}")) if folder.is_dir() else []
        pipelines = [load_pipeline(path) for path in files]
        names = {p.name for p in pipelines}
        if "default" not in names:
            pipelines.append(rag.get_pipeline("default"))
    rows = [{"name": p.name, "description": p.description, "steps": [s.kind for s in p.steps]} for p in pipelines]
    if as_json:
        emit_json({"pipelines": rows})
        return
    for row in rows:
        out.print(f"[bold]{escape(row['name'])}[/]: {' → '.join(row['steps'])}  [dim]{escape(row['description'])}[/]")
