"""`ragline eval gate`: the current prompt versions against a baseline, by run id or by
prompt label (the stored run of the versions that label names, same settings and data).
Leaks are gated whether or not a baseline is found (`compare.leak_gate`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragline.eval.compare import GATE_HARNESS_FAILURE, gate, leak_gate
from ragline.eval.datasets import load_dataset
from ragline.eval.harness import prompt_versions, settings_hash, settings_of
from ragline.eval.runs import RunRecord, RunStore
from ragline.eval.suite import Suite
from ragline.pipelines.prompts import PromptError, PromptRegistry


def labelled_versions(prompts_dir: Path, label: str, current: dict[str, str]) -> dict[str, str]:
    """The version `label` names for each prompt; a prompt the label does not cover (a
    built-in one, say) is compared at its current version."""
    registry = PromptRegistry(prompts_dir)
    versions = {}
    for name, version in current.items():
        try:
            versions[name] = registry.get(f"{name}@{label}").version
        except PromptError:
            versions[name] = version
    return versions


def _baseline(store: RunStore, rag, suite: Suite, ref: str, candidate: RunRecord) -> RunRecord | str:
    """The baseline run, or why there is none."""
    try:
        return store.run(ref)
    except KeyError:
        pass
    versions = labelled_versions(Path(rag.config.prompts.dir), ref, candidate.prompt_versions)
    found = store.find(suite.name, prompt_versions=versions, settings_hash=candidate.settings_hash,
                       dataset_hash=candidate.dataset_hash)  # fmt: skip
    if found is None:
        return (f"no stored run of suite {suite.name!r} for {ref!r} ({', '.join(versions.values())}) with these "
                "settings and data: run `ragline eval run` with those prompt versions first")  # fmt: skip
    return found


def gate_suite(rag, suite: Suite, baseline_ref: str, *, run: Callable[[], RunRecord]) -> tuple[dict[str, Any], int]:
    store = RunStore(rag.path)
    try:
        dataset = load_dataset(suite.dataset.path, suite.dataset.format, limit=suite.dataset.limit, name=suite.name)
        current = store.find(
            suite.name, prompt_versions=prompt_versions(rag, suite), settings_hash=settings_hash(settings_of(rag, suite)),
            dataset_hash=dataset.content_hash,
        )  # fmt: skip
        candidate = current or run()
        baseline = _baseline(store, rag, suite, baseline_ref, candidate)
        if isinstance(baseline, str):
            empty = {"baseline": None, "candidate": candidate.run_id, "metrics": {}, "flaky": [], "flipped": []}
            reasons = [baseline, *leak_gate(store, candidate, suite.gate)]
            return {**empty, "passed": False, "reasons": reasons}, GATE_HARNESS_FAILURE
        return gate(store, baseline, candidate, suite.gate)
    finally:
        store.close()


SUITE_SUFFIXES = (".toml", ".yaml", ".yml")


def changed_suites(rag, suites_dir: Path, baseline_label: str, *, run_for: Callable[[Suite], RunRecord]) -> dict[str, Any]:
    """`ragline eval changed`: every suite in `suites_dir` whose current prompt versions (with
    these settings and data) have no stored run is run and gated against `baseline_label`.
    Returns the report and the worst exit code (0 when nothing changed)."""
    from ragline.eval.suite import load_suite

    files = sorted(p for p in suites_dir.glob("*") if p.suffix in SUITE_SUFFIXES) if suites_dir.is_dir() else []
    report, worst = [], 0
    for path in files:
        suite = load_suite(path)
        store = RunStore(rag.path)
        try:
            dataset = load_dataset(suite.dataset.path, suite.dataset.format, limit=suite.dataset.limit, name=suite.name)
            versions = prompt_versions(rag, suite)
            stored = store.find(suite.name, prompt_versions=versions, settings_hash=settings_hash(settings_of(rag, suite)),
                                dataset_hash=dataset.content_hash)  # fmt: skip
        finally:
            store.close()
        if stored is not None:
            report.append({"suite": suite.name, "file": str(path), "changed": False, "prompt_versions": versions})
            continue
        verdict, code = gate_suite(rag, suite, baseline_label, run=lambda suite=suite: run_for(suite))
        worst = max(worst, code)
        report.append({"suite": suite.name, "file": str(path), "changed": True, "prompt_versions": versions,
                       "gate": verdict, "exit_code": code})  # fmt: skip
    return {"suites": report, "passed": worst == 0, "baseline": baseline_label}, worst
