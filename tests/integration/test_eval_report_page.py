"""The comparison page, opened in a real headless Chromium (Debian's `chromium`): it loads
from a file with no network, its plots are drawn (SVG in the rendered DOM), hostile text is
shown as text, and the browser logs no console error."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ragline.eval.html import comparison_page
from ragline.eval.runs import ItemResult, MetricSummary, RunRecord
from ragline.eval.scores import Score

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def _run(run_id: str, values: list[float]) -> tuple[RunRecord, dict[str, ItemResult]]:
    items = {
        f"q{i}": ItemResult(item_id=f"q{i}", question=f"Question {i} {HOSTILE}", answer=f"Answer {i} {HOSTILE}",
                            reference=f"Reference {i}", cited=["doc.md"], cited_texts=[f"Context of doc {HOSTILE}"],
                            scores={"token_f1": Score.of(v), "hit@3": Score.of(float(v > 0.5))})
        for i, v in enumerate(values)
    }  # fmt: skip
    summary = MetricSummary(mean=sum(values) / len(values), ci_low=0.0, ci_high=1.0, coverage=1.0)
    record = RunRecord(run_id=run_id, suite="pubmedqa", dataset_hash="h", settings_hash="s",
                       prompt_versions={"synthesis": f"synthesis@{run_id}"}, models=["fake"], ragline_version="0.1.0",
                       items=len(values), answered=len(values), metrics={"token_f1": summary, "hit@3": summary},
                       cost_usd=0.0)  # fmt: skip
    return record, items


COMPARISON = {
    "baseline": "aaaaaaaaaaaa", "candidate": "bbbbbbbbbbbb", "flaky": [], "flipped": ["q1"],
    "metrics": {
        "token_f1": {"delta": -0.25, "ci_low": -0.4, "ci_high": -0.1, "p_value": 0.002, "verdict": "worse",
                     "baseline_mean": 0.7, "candidate_mean": 0.45},
        "hit@3": {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "verdict": "no significant change",
                  "baseline_mean": 0.6, "candidate_mean": 0.6},
    },
}  # fmt: skip


def test_the_report_renders_in_chromium_without_errors(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is needed for this test (.ci/run installs it: apt-get install chromium)")
    baseline, baseline_items = _run("aaaaaaaaaaaa", [0.9, 0.8, 0.7, 0.6, 0.5])
    candidate, candidate_items = _run("bbbbbbbbbbbb", [0.9, 0.2, 0.6, 0.3, 0.5])
    older, _ = _run("000000000000", [0.4, 0.5, 0.6, 0.5, 0.5])
    page = tmp_path / "report.html"
    page.write_text(comparison_page(COMPARISON, baseline, candidate, baseline_items, candidate_items,
                                    [older, baseline, candidate]), encoding="utf-8")  # fmt: skip
    assert "<script>" not in page.read_text()  # escaped, never markup
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count('class="plot distribution"') == 2 and dom.count('class="plot deltas"') == 1
    assert dom.count('class="plot trend"') == 2 and dom.count("<polyline") == 2  # one line per metric, three runs
    assert "Reference 1" in dom and "Context of doc &lt;script&gt;" in dom
    assert len(re.findall(r"<rect ", dom)) >= 2 and "<circle" in dom
    assert "&lt;script&gt;" in dom and "<script>alert" not in dom
    assert "Items that got worse (token_f1)" in dom and "q1" in dom
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
