"""`ragline eval`: answer-quality suites (`run`, `compare`, `gate`) and the BEIR retrieval
eval (`retrieval`, in cli.py). A thin layer over `ragline.eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragline.cli_output import (
    ConfigOption,
    JsonOption,
    RecordOption,
    ReplayOption,
    StoreOption,
    emit_json,
    err,
    fail,
    opened,
    out,
    replay_overrides,
    store_dir,
)

eval_app = typer.Typer(help="Evaluate retrieval and answers.", no_args_is_help=True)

TREND_RUNS = 30  # the HTML trend shows the suite's latest runs on the same data

SuiteArgument = Annotated[Path, typer.Argument(help="A suite file (.toml or .yaml).")]


def _suite(path: Path):
    from ragline.eval.suite import SuiteError, load_suite

    try:
        return load_suite(path)
    except SuiteError as exc:
        fail(exc, kind="suite")


def _run(rag, suite, *, as_json: bool, repeat_group: str | None = None):
    from ragline.eval.harness import run_suite

    with Progress(TextColumn(f"eval {escape(suite.name)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=as_json) as progress:  # fmt: skip
        task = progress.add_task("items", total=None)
        return run_suite(rag, suite, tick=lambda n: progress.advance(task, n), repeat_group=repeat_group)


def _overrides(suite, record: Path | None, replay: Path | None) -> dict:
    overrides = replay_overrides(record, replay)
    if suite.budget_usd:
        overrides["budget"] = {"per_run_usd": suite.budget_usd}
    return overrides


@eval_app.command("run")
def run(
    suite_file: SuiteArgument,
    repeat: Annotated[int, typer.Option("--repeat", min=1, max=20, help="Run N times; items that flip are flaky.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the worst-case cost; call no model.")] = False,
    record: RecordOption = None,
    replay: ReplayOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer every item of a suite, score it, and store the run (each repeat a run)."""
    import uuid

    from ragline.eval.compare import flaky, repeat_summary
    from ragline.eval.runs import RunStore, summary_json

    suite = _suite(suite_file)
    if dry_run:
        from ragline.eval.harness import worst_case_cost

        with opened(store, config) as rag:
            estimate = worst_case_cost(rag, suite)
        estimate["repeats"] = repeat
        estimate["worst_case_usd"] = round(estimate["worst_case_usd"] * repeat, 6)
        if as_json:
            emit_json(estimate)
        else:
            out.print(f"{estimate['items']} items x {repeat}, {estimate['calls'] * repeat} model calls at most: "
                      f"up to ${estimate['worst_case_usd']:.4f}")  # fmt: skip
        return
    group = uuid.uuid4().hex[:12] if repeat > 1 else None
    with opened(store, config, **_overrides(suite, record, replay)) as rag:
        runs = [_run(rag, suite, as_json=as_json, repeat_group=group)[0] for _ in range(repeat)]
        result = runs[0]
        stored = RunStore(rag.path)
        try:
            unstable, variation = flaky(stored, result), repeat_summary(stored, result)
        finally:
            stored.close()
    if as_json:
        extra = {"repeats": [r.run_id for r in runs], "flaky": unstable, **variation} if repeat > 1 else {}
        emit_json(summary_json(result) | extra)
        return
    if unstable:
        err.print(f"flaky across {repeat} repeats: {', '.join(map(escape, unstable[:20]))}")
    table = Table(f"run {result.run_id} · {result.items} items", "mean", "95% CI", "coverage")
    for name, metric in result.metrics.items():
        ci = f"{metric.ci_low:.3f} – {metric.ci_high:.3f}" if metric.ci_low is not None else "-"
        table.add_row(name, "-" if metric.mean is None else f"{metric.mean:.3f}", ci, f"{metric.coverage:.0%}")
    out.print(table)
    out.print(f"prompts: {', '.join(result.prompt_versions.values())}; cost ${result.cost_usd:.4f}")


def _print_comparison(comparison: dict) -> None:
    table = Table(f"{comparison['baseline']} → {comparison['candidate']}", "delta", "95% CI", "p", "verdict")
    for name, metric in comparison["metrics"].items():
        if metric["delta"] is None:  # nothing to pair: the verdict says why
            table.add_row(name, "-", "-", "-", metric["verdict"])
            continue
        table.add_row(name, f"{metric['delta']:+.3f}", f"{metric['ci_low']:+.3f} – {metric['ci_high']:+.3f}",
                      f"{metric['p_value']:.3g}", metric["verdict"])  # fmt: skip
    out.print(table)
    if comparison["flipped"]:
        out.print(f"passed before, fail now: {', '.join(map(escape, comparison['flipped'][:20]))}")


@eval_app.command("compare")
def compare(
    baseline: Annotated[str, typer.Argument(help="The baseline run id.")],
    candidate: Annotated[str, typer.Argument(help="The candidate run id.")],
    html: Annotated[Path | None, typer.Option("--html", dir_okay=False, help="Also write a report page here.")] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Paired comparison of two stored runs: per metric delta, CI, p-value and verdict."""
    from ragline.eval.compare import compare_runs
    from ragline.eval.html import comparison_page
    from ragline.eval.runs import RunStore

    runs = RunStore(store_dir(store, config))
    try:
        comparison = compare_runs(runs, baseline, candidate)
        if html:
            first, second = runs.run(baseline), runs.run(candidate)
            history = [r for r in reversed(runs.runs(second.suite)) if r.dataset_hash == second.dataset_hash]
            page = comparison_page(comparison, first, second, runs.items(baseline), runs.items(candidate),
                                   history[-TREND_RUNS:])  # fmt: skip
            html.write_text(page, encoding="utf-8")
    except KeyError as exc:
        fail(exc.args[0], kind="not_found")
    finally:
        runs.close()
    if as_json:
        emit_json(comparison)
    else:
        _print_comparison(comparison)


JunitOption = Annotated[Path | None, typer.Option("--junit", dir_okay=False, help="Also write JUnit XML here.")]
MarkdownOption = Annotated[Path | None, typer.Option("--markdown", dir_okay=False, help="Also write a Markdown summary here.")]


def _write_reports(suite_name: str, verdict: dict, junit: Path | None, markdown: Path | None) -> None:
    from ragline.eval.reports import junit_xml
    from ragline.eval.reports import markdown as markdown_summary

    if junit:
        junit.write_text(junit_xml(suite_name, verdict), encoding="utf-8")
    if markdown:
        markdown.write_text(markdown_summary(suite_name, verdict), encoding="utf-8")


def _write_combined(results: list[tuple[str, dict]], junit: Path | None, markdown: Path | None) -> None:
    """Several suites' gates in one JUnit file (<testsuites>) and one Markdown summary."""
    from ragline.eval.reports import junit_xml
    from ragline.eval.reports import markdown as markdown_summary

    if junit:
        bodies = [junit_xml(name, verdict).split("?>", 1)[1].strip() for name, verdict in results]
        junit.write_text("<?xml version='1.0' encoding='utf-8'?>\n<testsuites>" + "".join(bodies) + "</testsuites>\n")
    if markdown:
        markdown.write_text("\n".join(markdown_summary(name, verdict) for name, verdict in results) or "No suite changed.\n")


@eval_app.command("gate")
def gate(
    suite_file: SuiteArgument,
    baseline: Annotated[str, typer.Option("--baseline", help="A run id, or a prompt label (e.g. production).")],
    record: RecordOption = None,
    replay: ReplayOption = None,
    junit: JunitOption = None,
    markdown: MarkdownOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the current prompt versions (reusing a stored run of exactly them) against a
    baseline. Exit 0 pass, 1 quality regression, 2 harness failure."""
    from ragline.eval.gating import gate_suite

    suite = _suite(suite_file)
    with opened(store, config, **_overrides(suite, record, replay)) as rag:
        verdict, code = gate_suite(rag, suite, baseline, run=lambda: _run(rag, suite, as_json=as_json)[0])
    _write_reports(suite.name, verdict, junit, markdown)
    if as_json:
        emit_json(verdict)
    else:
        if verdict.get("metrics"):
            _print_comparison(verdict)
        for reason in verdict["reasons"]:
            err.print(f"[red]•[/] {escape(reason)}")
        out.print("[green]gate passed[/]" if verdict["passed"] else "[red]gate failed[/]")
    if code:
        raise typer.Exit(code)


@eval_app.command("changed")
def changed(
    baseline: Annotated[str | None, typer.Option("--baseline", help="Prompt label to gate against (default: [eval] baseline).")] = None,
    junit: JunitOption = None,
    markdown: MarkdownOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run and gate every suite in `[eval] suites_dir` whose prompt versions have no stored
    run yet (a prompt file was edited). Exit as `gate` does, the worst suite deciding."""
    from ragline.eval.gating import changed_suites
    from ragline.eval.suite import SuiteError

    with opened(store, config) as rag:
        label = baseline or rag.config.eval.baseline
        try:
            report, code = changed_suites(rag, Path(rag.config.eval.suites_dir), label,
                                          run_for=lambda suite: _run(rag, suite, as_json=as_json)[0])  # fmt: skip
        except SuiteError as exc:
            fail(exc, kind="suite")
    _write_combined([(e["suite"], e["gate"]) for e in report["suites"] if e["changed"]], junit, markdown)
    if as_json:
        emit_json(report)
    else:
        for entry in report["suites"]:
            state = ("[green]passed[/]" if entry["gate"]["passed"] else "[red]failed[/]") if entry["changed"] else "unchanged"
            out.print(f"{escape(entry['suite'])}: {state}  [dim]{escape(', '.join(entry['prompt_versions'].values()))}[/]")
    if code:
        raise typer.Exit(code)
