"""Comparing two stored runs item by item, and the gate a candidate must pass.

Items are paired by id and by whom they asked as (`principals_hash`): ids are unique within
a dataset and the principals are part of its hash, so this only matters for `compare` of
runs on different data, where an item asked as someone else is not the same item (it counts
as missing from the candidate). Per metric the paired delta gets a bootstrap CI and a
permutation p-value (McNemar for pass/fail metrics), and a verdict (`leakage_rate` is
lower-is-better). The gate fails a candidate on a floor, on non-inferiority (the delta's CI
bound beyond the margin on the worse side), on items that passed in the baseline and fail
now, or, whatever the baseline, on any leak (`no_leaks`); it reports a harness failure
instead when the two runs are not comparable (other data, missing items, coverage below its
floor).
"""

from __future__ import annotations

from typing import Any

from ragline.eval.leakage import LOWER_IS_BETTER, leak_reasons
from ragline.eval.runs import ItemResult, RunRecord, RunStore
from ragline.eval.scores import Score
from ragline.eval.stats import compare_metric, flaky_items, flip_rate, flips, per_item_variance
from ragline.eval.suite import GateSection

GATE_PASSED, GATE_REGRESSION, GATE_HARNESS_FAILURE = 0, 1, 2


def _same(baseline: ItemResult, candidate: ItemResult | None) -> bool:
    """The same item: one id, asked as the same principals."""
    return candidate is not None and candidate.principals_hash == baseline.principals_hash


def _aligned(baseline: dict[str, ItemResult], candidate: dict[str, ItemResult], metric: str) -> tuple[list[Score], list[Score], list[str]]:
    ids = [item_id for item_id in baseline if metric in baseline[item_id].scores]
    missing = Score.error("missing from the candidate run")
    pairs = [(baseline[i].scores[metric],
              candidate[i].scores.get(metric, missing) if _same(baseline[i], candidate.get(i)) else missing)
             for i in ids]  # fmt: skip
    return [b for b, _ in pairs], [c for _, c in pairs], ids


def compare_runs(store: RunStore, baseline_id: str, candidate_id: str, *, alpha: float = 0.05) -> dict[str, Any]:
    """`eval compare --json`: per metric delta, CI, p-value and verdict; the items that
    passed in the baseline and fail in the candidate (`flipped`)."""
    baseline_run, candidate_run = store.run(baseline_id), store.run(candidate_id)
    baseline, candidate = store.items(baseline_id), store.items(candidate_id)
    metrics, flipped = {}, set()
    for metric in baseline_run.metrics:
        if metric not in candidate_run.metrics:
            continue
        before, after, ids = _aligned(baseline, candidate, metric)
        result = compare_metric(metric, before, after, alpha=alpha, higher_is_better=metric not in LOWER_IS_BETTER)
        metrics[metric] = {
            "delta": result.delta, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
            "verdict": result.verdict, "baseline_mean": result.baseline_mean, "candidate_mean": result.candidate_mean,
            "items": result.items, "test": result.test, "mde": result.mde,
        }  # fmt: skip
        if metric not in LOWER_IS_BETTER:  # pass/fail is "at least 0.5"; a leak is gated on its own
            regressed, _ = flips(before, after)
            flipped.update(ids[i] for i in regressed)
    return {"baseline": baseline_id, "candidate": candidate_id, "metrics": metrics,
            "flaky": flaky(store, candidate_run), "flipped": sorted(flipped)}  # fmt: skip


def _repeat_scores(store: RunStore, run: RunRecord) -> tuple[list[str], dict[str, list[list[Score]]]]:
    """Item ids common to every repeat of `run`'s group, and per metric each repeat's scores."""
    repeats = [store.items(r.run_id) for r in store.group(run)]
    keys = [{(i, item.principals_hash) for i, item in items.items()} for items in repeats]
    ids = sorted(i for i, _ in set.intersection(*keys)) if repeats else []
    missing = Score.error("missing")
    return ids, {m: [[items[i].scores.get(m, missing) for i in ids] for items in repeats] for m in run.metrics}


def flaky(store: RunStore, run: RunRecord) -> list[str]:
    """Items whose pass/fail differs between the repeats of `run`'s group, on any metric."""
    ids, by_metric = _repeat_scores(store, run)
    return sorted({ids[index] for scores in by_metric.values() if len(scores) >= 2 for index in flaky_items(scores)})


def repeat_summary(store: RunStore, run: RunRecord) -> dict[str, Any]:
    """For `run --repeat`: per metric the share of items that flip and the mean per-item
    variance across repeats (None where no item has two scores)."""
    _, by_metric = _repeat_scores(store, run)
    summary: dict[str, Any] = {"flip_rate": {}, "item_variance": {}}
    for metric, scores in by_metric.items():
        variances = [v for v in per_item_variance(scores) if v is not None]
        summary["flip_rate"][metric] = flip_rate(scores)
        summary["item_variance"][metric] = sum(variances) / len(variances) if variances else None
    return summary


def leak_gate(store: RunStore, candidate: RunRecord, policy: GateSection) -> list[str]:
    """The absolute gate: why the candidate fails on leaks (empty: none, or `no_leaks` off)."""
    return leak_reasons(store.items(candidate.run_id).values()) if policy.no_leaks else []


def gate(store: RunStore, baseline: RunRecord, candidate: RunRecord, policy: GateSection) -> tuple[dict[str, Any], int]:
    """`eval gate --json` (the comparison plus passed and reasons) and the exit code."""
    comparison = compare_runs(store, baseline.run_id, candidate.run_id, alpha=policy.alpha)
    harness, quality = _comparable(baseline, candidate), []
    answered = candidate.answered / candidate.items if candidate.items else 0.0
    if answered < policy.min_coverage:
        harness.append(f"only {answered:.0%} of the items were answered (the floor is {policy.min_coverage:.0%}): "
                       "see the run's item errors")  # fmt: skip
    for name, summary in candidate.metrics.items():
        floor = policy.floors.get(name)
        if floor is not None and (summary.mean is None or summary.mean < floor):
            quality.append(f"{name}: mean {summary.mean} is below the floor {floor}")
    for name, result in comparison["metrics"].items():
        if name in LOWER_IS_BETTER:
            if result["ci_low"] is not None and result["ci_low"] > policy.margin:
                quality.append(
                    f"{name}: worse by {result['delta']:.3f} ({1 - policy.alpha:.0%} CI {result['ci_low']:.3f} to "
                    f"{result['ci_high']:.3f}, p = {result['p_value']:.3g}); the margin is {policy.margin}"
                )
        elif result["ci_high"] is not None and result["ci_high"] < -policy.margin:
            quality.append(
                f"{name}: worse by {-result['delta']:.3f} ({1 - policy.alpha:.0%} CI {result['ci_low']:.3f} to "
                f"{result['ci_high']:.3f}, "
                f"p = {result['p_value']:.3g}); the margin is {policy.margin}"
            )
    if policy.no_new_failures and comparison["flipped"]:
        quality.append(f"{len(comparison['flipped'])} items passed in the baseline and fail now")
    quality += leak_gate(store, candidate, policy)
    reasons = harness + quality
    code = GATE_HARNESS_FAILURE if harness else GATE_REGRESSION if quality else GATE_PASSED
    return {**comparison, "passed": code == GATE_PASSED, "reasons": reasons}, code


def _comparable(baseline: RunRecord, candidate: RunRecord) -> list[str]:
    problems = []
    if baseline.dataset_hash != candidate.dataset_hash:
        problems.append("the dataset changed since the baseline run: re-run the baseline on this data")
    if baseline.items != candidate.items:
        problems.append(f"the runs have {baseline.items} and {candidate.items} items")
    return problems
