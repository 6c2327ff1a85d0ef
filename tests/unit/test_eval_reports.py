"""Gate reports for CI: JUnit XML a CI server can read, one case per metric plus the gate,
and a Markdown summary; both name what failed."""

from xml.etree import ElementTree as ET

from ragline.eval.reports import junit_xml, markdown

VERDICT = {
    "baseline": "aaaaaaaaaaaa", "candidate": "bbbbbbbbbbbb", "passed": False, "flipped": ["q7"], "flaky": [],
    "metrics": {
        "token_f1": {"delta": -0.2, "ci_low": -0.3, "ci_high": -0.1, "p_value": 0.001, "verdict": "worse"},
        "hit@3": {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "verdict": "no significant change"},
        "citation_validity": {"delta": None, "ci_low": None, "ci_high": None, "p_value": None, "verdict": "undefined"},
    },
    "reasons": ["token_f1: worse by 0.200 (95% CI -0.300 to -0.100, p = 0.001); the margin is 0.02",
                "1 items passed in the baseline and fail now"],
}  # fmt: skip


def test_junit_has_a_case_per_metric_and_fails_the_right_ones():
    root = ET.fromstring(junit_xml("pubmedqa", VERDICT).split("?>", 1)[1])
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"token_f1", "hit@3", "citation_validity", "gate"}
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {"token_f1", "gate"} and root.get("failures") == "2"
    assert "worse by 0.200" in cases["token_f1"].find("failure").get("message")


def test_a_passed_gate_has_no_failures():
    passed = {**VERDICT, "passed": True, "reasons": [], "flipped": []}
    root = ET.fromstring(junit_xml("pubmedqa", passed).split("?>", 1)[1])
    assert root.get("failures") == "0" and not list(root.iter("failure"))


def test_markdown_summary():
    text = markdown("pubmedqa", VERDICT)
    assert text.startswith("### ragline eval gate `pubmedqa`: failed")
    assert "| token_f1 | -0.200 | -0.300 – -0.100 | 0.001 | worse |" in text
    assert "| citation_validity | - | - | - | undefined |" in text and "- 1 items passed" in text and "q7" in text
