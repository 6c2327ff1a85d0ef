"""Answer-quality suites on PubMedQA (the first 20 dev questions, their contexts ingested as
the corpus) with the real store, embedder and retrieval. The model is scripted by prompt
version, so a deliberately bad prompt answers badly and the good one well: the harness must
flag the bad version as a significant regression, call the same prompt twice "no
significant change", and gate accordingly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer

import ragline
from ragline.eval.compare import GATE_PASSED, GATE_REGRESSION
from ragline.eval.gating import gate_suite
from ragline.eval.harness import run_suite
from ragline.eval.runs import RunStore
from ragline.eval.suite import load_suite
from ragline.llm.fake import FakeProvider
from ragline.pipelines.prompts import builtin_prompt

PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa-dev" / "pqal_dev.json"
GOOD_VERSION = builtin_prompt("synthesis").version


@pytest.fixture(scope="module")
def entries() -> dict:
    if not PUBMEDQA.is_file():
        pytest.skip(f"PubMedQA dev set not found at {PUBMEDQA}")
    data = json.loads(PUBMEDQA.read_text())
    return dict(list(data.items())[:20])


@pytest.fixture
def suite_file(tmp_path, entries):
    dataset = tmp_path / "pqal_first20.json"
    dataset.write_text(json.dumps(entries))
    suite = tmp_path / "pubmedqa.toml"
    suite.write_text(
        'name = "pubmedqa"\n[dataset]\nformat = "pubmedqa"\npath = "pqal_first20.json"\n'
        '[pipeline]\nname = "default"\n[metrics]\nnames = ["token_f1", "rouge_l", "hit@3", "citation_validity", '
        '"label_accuracy"]\n[gate]\nmargin = 0.02\n'
    )
    return suite


def scripted(entries: dict):
    """Answers by prompt version: the built-in prompt gets the reference answer and label,
    any other version a wrong label and no citation."""
    by_question = {entry["QUESTION"]: entry for entry in entries.values()}

    def answer(request) -> str:
        question = request.messages[-1].content.strip()
        entry = by_question.get(question)
        if entry is None:
            return "I don't know."
        if request.prompt_version == GOOD_VERSION:
            return f"{entry['final_decision'].capitalize()}. {entry['LONG_ANSWER']} [1]"
        wrong = {"yes": "no", "no": "yes", "maybe": "yes"}[entry["final_decision"]]
        return f"{wrong.capitalize()}, probably."

    return answer


def _open(store, embedder, entries, prompts_dir):
    return ragline.open(
        store, embedder=embedder, provider=FakeProvider(scripted(entries)), prompts={"dir": str(prompts_dir)},
        cache={"enabled": False}, retrieval={"rerank": "none"},
    )  # fmt: skip


def _bad_prompt(prompts_dir) -> None:
    prompts_dir.mkdir(exist_ok=True)
    source = builtin_prompt("synthesis").source.replace("one or two sentences", "exactly three words")
    (prompts_dir / "synthesis.j2").write_text(source)


def test_a_bad_prompt_is_a_significant_regression_and_the_same_prompt_is_not(tmp_path, embedder, entries, suite_file):
    store, prompts_dir = tmp_path / "store", tmp_path / "prompts"
    suite = load_suite(suite_file)
    with _open(store, embedder, entries, prompts_dir) as rag:
        good, good_items = run_suite(rag, suite)
        again, _ = run_suite(rag, suite)
    _bad_prompt(prompts_dir)
    with _open(store, embedder, entries, prompts_dir) as rag:
        bad, _ = run_suite(rag, suite)
    assert good.items == 20 and good.prompt_versions == {"synthesis": GOOD_VERSION}
    assert bad.prompt_versions["synthesis"] != GOOD_VERSION and bad.dataset_hash == good.dataset_hash
    assert good.metrics["label_accuracy"].mean == 1.0 and good.metrics["label_accuracy"].coverage == 1.0
    assert all(item.sources for item in good_items)  # the corpus was ingested and retrieved from

    from ragline.eval.compare import compare_runs

    runs = RunStore(store)
    try:
        worse = compare_runs(runs, good.run_id, bad.run_id)
        same = compare_runs(runs, good.run_id, again.run_id)
    finally:
        runs.close()
    assert worse["metrics"]["label_accuracy"]["verdict"] == "worse" and worse["metrics"]["label_accuracy"]["p_value"] < 0.01
    assert worse["metrics"]["token_f1"]["verdict"] == "worse" and len(worse["flipped"]) == 20
    for name, metric in same["metrics"].items():
        assert metric["verdict"] == "no significant change" and metric["delta"] == 0.0, name
    for metric in [*worse["metrics"].values(), *same["metrics"].values()]:
        assert all(v is None or v == v for v in metric.values() if isinstance(v, float))  # never NaN


def test_the_gate_passes_the_same_versions_and_fails_a_regression(tmp_path, embedder, entries, suite_file):
    store, prompts_dir = tmp_path / "store", tmp_path / "prompts"
    suite = load_suite(suite_file)
    with _open(store, embedder, entries, prompts_dir) as rag:
        baseline, _ = run_suite(rag, suite)
        verdict, code = gate_suite(rag, suite, baseline.run_id, run=lambda: run_suite(rag, suite)[0])
    assert code == GATE_PASSED and verdict["passed"] and verdict["candidate"] == baseline.run_id  # reused, not re-run
    _bad_prompt(prompts_dir)
    with _open(store, embedder, entries, prompts_dir) as rag:
        verdict, code = gate_suite(rag, suite, baseline.run_id, run=lambda: run_suite(rag, suite)[0])
    assert code == GATE_REGRESSION and not verdict["passed"]
    assert any(reason.startswith("label_accuracy: worse") for reason in verdict["reasons"])


def test_cli_eval_run_and_gate_json_shapes(tmp_path, entries, suite_file):
    """The real CLI; the model an OpenAI-compatible server on 127.0.0.1 answering from the script."""
    backend = FakeProvider(scripted(entries), model="scripted")
    with ProtocolServer(OpenAIHandler, backend, API_KEY) as server:
        config = tmp_path / "ragline.toml"
        config.write_text(
            f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = "{server.base_url()}"\n'
            f'api_key_env = "RAGLINE_TEST_KEY"\n\n[retrieval]\nrerank = "none"\n\n[prompts]\ndir = "{tmp_path / "prompts"}"\n'
        )

        def cli(*args):
            return subprocess.run(
                [sys.executable, "-m", "ragline", "eval", *args, "--store", str(tmp_path / "store"), "--config",
                 str(config), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=900,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "RAGLINE_TEST_KEY": API_KEY},
            )  # fmt: skip

        ran = cli("run", str(suite_file))
        assert ran.returncode == 0, ran.stderr
        run = json.loads(ran.stdout)
        assert set(run) == {"run_id", "suite", "items", "prompt_versions", "metrics", "cost_usd"}
        assert run["items"] == 20 and run["prompt_versions"] == {"synthesis": GOOD_VERSION}
        assert all(set(m) == {"mean", "ci_low", "ci_high", "coverage"} for m in run["metrics"].values())
        gated = cli("gate", str(suite_file), "--baseline", run["run_id"])
        assert gated.returncode == 0, gated.stderr
        verdict = json.loads(gated.stdout)
        assert verdict["passed"] is True and {"baseline", "candidate", "metrics", "flaky", "flipped", "reasons"} <= set(verdict)
        compared = cli("compare", run["run_id"], run["run_id"])
        assert compared.returncode == 0 and re.fullmatch(r"[0-9a-f]{12}", json.loads(compared.stdout)["baseline"])
