"""`ragline eval gate`: the current prompt versions against a baseline, by run id or by
prompt label (the stored run of the versions that label names, same settings and data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragline.eval.compare import GATE_HARNESS_FAILURE, gate
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
            return {**empty, "passed": False, "reasons": [baseline]}, GATE_HARNESS_FAILURE
        return gate(store, baseline, candidate, suite.gate)
    finally:
        store.close()
