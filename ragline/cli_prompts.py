"""`ragline prompts`: list, show, diff and label the versioned prompts of a prompts folder.

Like the main command, `--json` prints exactly one JSON object on stdout; errors go to stderr
with exit code 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragline.cli_output import ConfigOption, StoreOption, fail
from ragline.cli_output import emit_json as _emit_json
from ragline.pipelines.prompts import Prompt, PromptError, PromptRegistry
from ragline.pipelines.prompts import diff as diff_prompts

prompts_app = typer.Typer(
    help="Versioned prompt templates: NAME, NAME@label or NAME@hash.", no_args_is_help=True, add_completion=False
)
out = Console()
err = Console(stderr=True)

DirOption = Annotated[Path, typer.Option("--dir", help="Prompts folder (templates + manifest.json).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]


@contextmanager
def _registry(folder: Path) -> Iterator[PromptRegistry]:
    """The folder's registry, turning prompt errors into a clear message and exit code 1."""
    try:
        yield PromptRegistry(folder)
    except PromptError as exc:
        fail(exc, kind="prompt")


def _prompt_json(prompt: Prompt) -> dict[str, Any]:
    return {
        "name": prompt.name, "version": prompt.version, "hash": prompt.hash, "description": prompt.description,
        "variables": list(prompt.variables), "roles": list(prompt.roles),
    }  # fmt: skip


@prompts_app.command("list")
def list_prompts(folder: DirOption = Path("prompts"), as_json: JsonOption = False) -> None:
    """Each prompt with its current version, labels and stored versions."""
    with _registry(folder) as registry:
        rows = []
        for name in registry.names():
            current = registry.current(name)
            rows.append({
                "name": name,
                "version": current.version if current else None,
                "description": current.description if current else "",
                "labels": registry.labels(name),
                "versions": [f"{name}@{h}" for h in registry.versions(name)],
            })  # fmt: skip
    if as_json:
        _emit_json({"prompts": rows})
        return
    table = Table("prompt", "current version", "labels", "description")
    for row in rows:
        labels = ", ".join(f"{label} → {version.partition('@')[2]}" for label, version in row["labels"].items())
        table.add_row(row["name"], row["version"] or "[dim](no file)[/]", escape(labels), escape(row["description"]))
    out.print(table if rows else f"no prompts in {escape(str(folder))}")


@prompts_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@label or NAME@hash-prefix.")],
    folder: DirOption = Path("prompts"),
    as_json: JsonOption = False,
) -> None:
    """A prompt version's template source on stdout (its version and labels on stderr)."""
    with _registry(folder) as registry:
        prompt = registry.get(ref)
        labels = [label for label, version in registry.labels(prompt.name).items() if version == prompt.version]
    if as_json:
        _emit_json({**_prompt_json(prompt), "labels": labels, "source": prompt.source})
        return
    err.print(f"[bold]{prompt.version}[/]" + (f"  ({escape(', '.join(labels))})" if labels else ""))
    out.print(prompt.source, end="", markup=False, highlight=False, soft_wrap=True)


@prompts_app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The old version: NAME@label or NAME@hash-prefix.")],
    b: Annotated[str | None, typer.Argument(help="The new version (default: NAME's current file).")] = None,
    folder: DirOption = Path("prompts"),
    as_json: JsonOption = False,
) -> None:
    """Unified diff between two versions of a prompt."""
    with _registry(folder) as registry:
        old = registry.get(a)
        new = registry.get(b or old.name)
    text = diff_prompts(old, new)
    if as_json:
        _emit_json({"from": old.version, "to": new.version, "diff": text})
        return
    out.print(text or f"{old.version} and {new.version} are identical", end="" if text else "\n",
              markup=False, highlight=False, soft_wrap=True)  # fmt: skip


@prompts_app.command()
def label(
    ref: Annotated[str, typer.Argument(help="The version to label: NAME, NAME@label or NAME@hash-prefix.")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="The label, e.g. production or staging.")],
    folder: DirOption = Path("prompts"),
    require_eval: Annotated[
        Path | None,
        typer.Option("--require-eval", exists=True, dir_okay=False,
                     help="Label only if this suite's gate passes for the version, against the label's current one."),
    ] = None,  # fmt: skip
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point a label at a prompt version (written to the folder's manifest.json)."""
    if require_eval is not None:
        _require_gate(ref, label_name, folder, require_eval, store, config)
    with _registry(folder) as registry:
        prompt, previous = registry.label(ref, label_name)
    if as_json:
        _emit_json({"name": prompt.name, "label": label_name, "version": prompt.version, "previous": previous})
        return
    moved = f" (was {previous})" if previous and previous != prompt.version else ""
    out.print(f"{prompt.name}@{escape(label_name)} → {prompt.version}{moved}")


def _require_gate(ref: str, label_name: str, folder: Path, suite_file: Path, store, config) -> None:
    """Gate `suite_file` with `ref` as the answer prompt against what `label_name` names now;
    refuse (exit 1, or 2 for a harness failure) unless it passes."""
    from ragline.cli_output import opened
    from ragline.config import ConfigError, load_config
    from ragline.eval.gating import gate_suite
    from ragline.eval.harness import run_suite
    from ragline.eval.suite import SuiteError, load_suite

    with _registry(folder) as registry:
        prompt = registry.get(ref)
    try:
        suite = load_suite(suite_file)
    except SuiteError as exc:
        fail(exc, kind="suite")
    try:
        answer_prompt = load_config(config).prompts.synthesis.split("@")[0]
    except ConfigError as exc:
        fail(exc)
    if prompt.name != answer_prompt:
        fail(f"--require-eval gates the answer prompt ({answer_prompt}); {prompt.name} is not it", kind="usage", code=2)
    with opened(store, config, prompts={"dir": str(folder), "synthesis": prompt.version}) as rag:
        verdict, code = gate_suite(rag, suite, label_name, run=lambda: run_suite(rag, suite)[0])
    if code:
        reasons = "; ".join(verdict["reasons"]) or "the gate failed"
        fail(f"{prompt.version} not labelled {label_name}: suite {suite.name} {reasons}", kind="gate", code=code)
