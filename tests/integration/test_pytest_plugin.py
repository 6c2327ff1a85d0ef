"""The pytest plugin (entry point pytest11): a `test_*.suite.toml` file runs as one test per
metric (or, with --ragline-per-item, one test per dataset item) against a real store, in a
real pytest subprocess; a floor that is not met fails its test with a one-line reason, the
others pass."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer

from ragline.llm.fake import FakeProvider

pytest_plugins = ["pytester"]
PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa-dev" / "pqal_dev.json"


def test_a_suite_file_runs_as_tests_with_floors(pytester, monkeypatch):
    if not PUBMEDQA.is_file():
        pytest.skip(f"PubMedQA dev set not found at {PUBMEDQA}")
    entries = dict(list(json.loads(PUBMEDQA.read_text()).items())[:10])
    answers = {e["QUESTION"]: f"{e['final_decision'].capitalize()}. {e['LONG_ANSWER']} [1]" for e in entries.values()}
    unanswered = list(entries)[:2]  # two items the model gets wrong
    for pmid in unanswered:
        answers[entries[pmid]["QUESTION"]] = "Unclear."
    (pytester.path / "pqal10.json").write_text(json.dumps(entries))
    suite = ('name = "pubmedqa"\n[dataset]\nformat = "pubmedqa"\npath = "../pqal10.json"\n'
             '[metrics]\nnames = ["token_f1", "exact_match", "citation_validity"]\n[gate]\nfloors = {{{}}}\n')  # fmt: skip
    for folder, floors in [("per_metric", "token_f1 = 0.5, exact_match = 0.5"), ("per_item", "token_f1 = 0.5")]:
        (pytester.path / folder).mkdir()
        (pytester.path / folder / "test_pubmedqa.suite.toml").write_text(suite.format(floors))
    backend = FakeProvider(lambda request: answers.get(request.messages[-1].content.strip(), "?"), model="scripted")
    with ProtocolServer(OpenAIHandler, backend, API_KEY) as server:
        pytester.makefile(".toml", ragline=(
            f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = "{server.base_url()}"\n'
            'api_key_env = "RAGLINE_TEST_KEY"\n\n[retrieval]\nrerank = "none"\n'
        ))  # fmt: skip
        monkeypatch.setenv("RAGLINE_TEST_KEY", API_KEY)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        common = ["-p", "no:cacheprovider", "--ragline-store", str(pytester.path / "store"),
                  "--ragline-config", str(pytester.path / "ragline.toml"), "-rf"]  # fmt: skip
        per_metric = pytester.runpytest_subprocess("per_metric", *common, timeout=600)
        per_item = pytester.runpytest_subprocess("per_item", "--ragline-per-item", *common, timeout=600)
    per_metric.assert_outcomes(passed=2, failed=1)
    per_metric.stdout.fnmatch_lines(["*exact_match: mean 0.0 below the floor 0.5*"])
    per_item.assert_outcomes(passed=8, failed=2)
    per_item.stdout.fnmatch_lines([f"*item {pmid}: token_f1 0.* < 0.5*" for pmid in unanswered], consecutive=False)
