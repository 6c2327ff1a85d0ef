"""The report page as text: self-contained (no script, nothing fetched), every value escaped,
an undefined comparison shown as such rather than as numbers."""

from ragline.eval.html import comparison_page
from ragline.eval.runs import ItemResult, MetricSummary, RunRecord
from ragline.eval.scores import Score


def _record(run_id):
    summary = MetricSummary(mean=None, ci_low=None, ci_high=None, coverage=0.0)
    return RunRecord(run_id=run_id, suite="s<1>", dataset_hash="h", settings_hash="x", prompt_versions={"p": "p@1"},
                     models=["m"], ragline_version="0", items=1, answered=0, metrics={"m@1": summary}, cost_usd=0.0)  # fmt: skip


def test_a_page_without_numbers_is_still_a_page():
    comparison = {"baseline": "a", "candidate": "b", "flaky": [], "flipped": [],
                  "metrics": {"m@1": {"delta": None, "ci_low": None, "ci_high": None, "p_value": None,
                                      "verdict": "undefined", "baseline_mean": None, "candidate_mean": None}}}  # fmt: skip
    items = {"q": ItemResult(item_id="q", question="<b>q</b>", error="timeout", scores={"m@1": Score.error("timeout")})}
    page = comparison_page(comparison, _record("a"), _record("b"), items, items)
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page.split("<body>")[1]
    assert "s&lt;1&gt;" in page and "<b>q</b>" not in page and "undefined" in page and "No item got worse." in page
    assert "Fewer than two stored runs" in page
