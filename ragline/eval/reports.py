"""Gate results for CI: JUnit XML (one test case per metric, one for the gate's other
reasons) and a Markdown summary for a pull-request comment."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET


def _reasons_for(metric: str, reasons: list[str]) -> list[str]:
    return [reason for reason in reasons if reason.startswith(f"{metric}:")]


def junit_xml(suite: str, verdict: dict[str, Any]) -> str:
    reasons = verdict.get("reasons", [])
    metrics = verdict.get("metrics", {})
    cases = ET.Element("testsuite", name=f"ragline eval {suite}", tests=str(len(metrics) + 1))
    failures = 0
    for name, result in metrics.items():
        case = ET.SubElement(cases, "testcase", classname=f"eval.{suite}", name=name)
        own = _reasons_for(name, reasons)
        if own:
            failures += 1
            ET.SubElement(case, "failure", message=own[0]).text = "\n".join(own)
        ET.SubElement(case, "system-out").text = (
            f"delta {result.get('delta')} CI [{result.get('ci_low')}, {result.get('ci_high')}] "
            f"p {result.get('p_value')} verdict {result.get('verdict')}"
        )
    gate_case = ET.SubElement(cases, "testcase", classname=f"eval.{suite}", name="gate")
    other = [r for r in reasons if not any(r.startswith(f"{m}:") for m in metrics)]
    if other or not verdict.get("passed", False) and not any(_reasons_for(m, reasons) for m in metrics):
        failures += 1
        ET.SubElement(gate_case, "failure", message=(other or ["gate failed"])[0]).text = "\n".join(other)
    cases.set("failures", str(failures))
    return ET.tostring(cases, encoding="unicode", xml_declaration=True) + "\n"


def markdown(suite: str, verdict: dict[str, Any]) -> str:
    status = "passed" if verdict.get("passed") else "failed"
    lines = [f"### ragline eval gate `{suite}`: {status}", "",
             f"baseline `{verdict.get('baseline')}` → candidate `{verdict.get('candidate')}`", "",
             "| metric | delta | 95% CI | p | verdict |", "| --- | ---: | --- | ---: | --- |"]  # fmt: skip
    for name, r in verdict.get("metrics", {}).items():
        if r.get("delta") is None:
            lines.append(f"| {name} | - | - | - | {r.get('verdict')} |")
        else:
            lines.append(f"| {name} | {r['delta']:+.3f} | {r['ci_low']:+.3f} – {r['ci_high']:+.3f} | {r['p_value']:.3g} | {r['verdict']} |")
    if verdict.get("reasons"):
        lines += ["", *(f"- {reason}" for reason in verdict["reasons"])]
    if verdict.get("flipped"):
        lines += ["", f"Passed in the baseline, fail now: {', '.join(verdict['flipped'][:30])}"]
    return "\n".join(lines) + "\n"
