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
BAD_INSTRUCTION = "exactly three words"


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
    """Answers by prompt: the good one gets the reference answer and label, the bad one (its
    system message asks for three words) a wrong label and no citation. Decided by content,
    not version, because a prompt version does not cross an HTTP provider's wire."""
    by_question = {entry["QUESTION"]: entry for entry in entries.values()}

    def answer(request) -> str:
        question = request.messages[-1].content.strip()
        entry = by_question.get(question)
        if entry is None:
            return "I don't know."
        if BAD_INSTRUCTION not in request.messages[0].content:
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
    source = builtin_prompt("synthesis").source.replace("one or two sentences", BAD_INSTRUCTION)
    assert source != builtin_prompt("synthesis").source
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
            f'\n[eval]\nsuites_dir = "{_suites_dir(tmp_path, suite_file)}"\n'
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
        junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
        gated = cli("gate", str(suite_file), "--baseline", run["run_id"], "--junit", str(junit), "--markdown", str(summary))
        assert gated.returncode == 0, gated.stderr
        verdict = json.loads(gated.stdout)
        assert verdict["passed"] is True and {"baseline", "candidate", "metrics", "flaky", "flipped", "reasons"} <= set(verdict)
        assert 'failures="0"' in junit.read_text() and ": passed" in summary.read_text()
        unchanged = cli("changed")
        assert unchanged.returncode == 0, unchanged.stderr
        assert [entry["changed"] for entry in json.loads(unchanged.stdout)["suites"]] == [False]
        compared = cli("compare", run["run_id"], run["run_id"])
        assert compared.returncode == 0 and re.fullmatch(r"[0-9a-f]{12}", json.loads(compared.stdout)["baseline"])


def _suites_dir(tmp_path, suite_file):
    """A suites folder holding the suite, its dataset path made absolute."""
    suites = tmp_path / "evals"
    suites.mkdir(exist_ok=True)
    (suites / "pubmedqa.toml").write_text(suite_file.read_text().replace('path = "pqal_first20.json"',
                                                                          f'path = "{tmp_path / "pqal_first20.json"}"'))
    return suites


def test_editing_a_prompt_makes_eval_changed_run_and_gate_the_suite(tmp_path, embedder, entries, suite_file):
    from ragline.eval.gating import changed_suites
    from ragline.pipelines.prompts import PromptRegistry

    store, prompts_dir, suites = tmp_path / "store", tmp_path / "prompts", _suites_dir(tmp_path, suite_file)
    prompts_dir.mkdir()
    (prompts_dir / "synthesis.j2").write_text(builtin_prompt("synthesis").source)  # the good prompt, as a file
    PromptRegistry(prompts_dir).label("synthesis", "production")

    def changed():
        with _open(store, embedder, entries, prompts_dir) as rag:
            return changed_suites(rag, suites, "production", run_for=lambda suite: run_suite(rag, suite)[0])

    first, code = changed()
    assert code == 0 and first["suites"][0]["changed"] and first["suites"][0]["gate"]["passed"]
    again, code = changed()
    assert code == 0 and not again["suites"][0]["changed"]  # stored: nothing to run
    _bad_prompt(prompts_dir)  # an edit of prompts/synthesis.j2
    edited, code = changed()
    (entry,) = edited["suites"]
    assert entry["changed"] and code == GATE_REGRESSION and not entry["gate"]["passed"]
    assert entry["gate"]["baseline"] == first["suites"][0]["gate"]["candidate"]  # gated against production's run


def test_a_label_requiring_an_eval_refuses_a_regressing_version(tmp_path, entries, suite_file):
    """`ragline prompts label NAME@VERSION production --require-eval SUITE`, in process with
    the real embedder; the model an OpenAI-compatible server on 127.0.0.1 (scripted)."""
    from typer.testing import CliRunner

    from ragline.cli import app
    from ragline.pipelines.prompts import PromptRegistry

    prompts_dir, store = tmp_path / "prompts", tmp_path / "store"
    prompts_dir.mkdir()
    (prompts_dir / "synthesis.j2").write_text(builtin_prompt("synthesis").source)
    registry = PromptRegistry(prompts_dir)
    registry.label("synthesis", "production")
    _bad_prompt(prompts_dir)  # the working copy is now the bad version
    bad = registry.current("synthesis")
    with ProtocolServer(OpenAIHandler, FakeProvider(scripted(entries), model="scripted"), API_KEY) as server:
        config = tmp_path / "ragline.toml"
        config.write_text(f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = "{server.base_url()}"\n'
                          'api_key_env = "RAGLINE_TEST_KEY"\n\n[retrieval]\nrerank = "none"\n')  # fmt: skip
        runner = CliRunner(env={"RAGLINE_TEST_KEY": API_KEY, "HF_HUB_OFFLINE": "1"})
        common = ["--dir", str(prompts_dir), "--store", str(store), "--config", str(config)]
        good_run = runner.invoke(app, ["prompts", "label", "synthesis@production", "production", "--require-eval",
                                       str(suite_file), *common])  # fmt: skip
        assert good_run.exit_code == 0, good_run.output  # the first gate: the version against itself
        refused = runner.invoke(app, ["prompts", "label", bad.version, "production", "--require-eval", str(suite_file), *common])
    assert refused.exit_code == GATE_REGRESSION and "not labelled production" in refused.output, refused.output
    assert registry.get("synthesis@production").version == GOOD_VERSION  # production still names the good one


def test_an_llm_judge_scores_each_item_and_its_prompt_version_is_part_of_the_run(tmp_path, embedder, entries, suite_file):
    answer = scripted(entries)

    def with_judge(request):
        if request.messages[0].content.startswith("You grade answers"):
            question = request.messages[-1].content
            return "not json at all" if "mammography" in question else '{"score": 1, "reason": "same facts"}'
        return answer(request)

    suite = load_suite(suite_file).model_copy(deep=True)
    suite.metrics.names = ["token_f1", "judge_correctness"]
    with ragline.open(tmp_path / "store", embedder=embedder, provider=FakeProvider(with_judge),
                      cache={"enabled": False}, retrieval={"rerank": "none"}) as rag:  # fmt: skip
        run, items = run_suite(rag, suite)
    assert run.prompt_versions["judge_correctness"] == builtin_prompt("judge_correctness").version
    judged = run.metrics["judge_correctness"]
    assert judged.mean == 1.0 and judged.coverage == pytest.approx(19 / 20)  # one reply did not parse
    (unparsed,) = [item for item in items if item.scores["judge_correctness"].status == "undefined"]
    assert unparsed.scores["judge_correctness"].reason == "parse_error" and unparsed.judge_reply == "not json at all"


def test_a_replayed_run_equals_its_recording_without_a_model_call(tmp_path, embedder, entries, suite_file):
    from ragline.llm.fake import Fail

    suite, cassette, store = load_suite(suite_file), tmp_path / "run.jsonl", tmp_path / "store"
    common = {"cache": {"enabled": False}, "retrieval": {"rerank": "none"}}
    with ragline.open(store, embedder=embedder, provider=FakeProvider(scripted(entries)),
                      replay={"record": str(cassette)}, **common) as rag:  # fmt: skip
        recorded, recorded_items = run_suite(rag, suite)
    offline = FakeProvider([Fail("server", status=500)])  # any call to the model would fail the items
    with ragline.open(store, embedder=embedder, provider=offline, replay={"replay": str(cassette)}, **common) as rag:
        replayed, replayed_items = run_suite(rag, suite)
    assert [i.error for i in replayed_items if i.error] == []
    assert offline.calls == 0 and replayed.run_id != recorded.run_id
    assert replayed.metrics == recorded.metrics
    assert [(i.item_id, i.answer, i.scores) for i in replayed_items] == [(i.item_id, i.answer, i.scores) for i in recorded_items]


def test_a_beir_suite_ingests_its_corpus_and_scores_ranking_metrics(tmp_path, embedder):
    folder = tmp_path / "beir"
    folder.mkdir()
    docs = {"d1": "Hedgehogs hibernate through the winter in nests of leaves.",
            "d2": "The quarterly budget review is due in March.", "d3": "Paid leave is 25 days for new employees."}  # fmt: skip
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "Where do hedgehogs spend the winter?"}) + "\n"
                                          + json.dumps({"_id": "q2", "text": "How many days of paid leave?"}) + "\n")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td3\t1\r\n")
    suite_path = tmp_path / "beir.yaml"
    suite_path.write_text(f"name: tiny\ndataset:\n  format: beir\n  path: {folder}\nmetrics:\n  names: [hit@1, ndcg@3, mrr@3]\n")
    with ragline.open(tmp_path / "store", embedder=embedder, provider=FakeProvider(["An answer [1]."]),
                      cache={"enabled": False}, retrieval={"rerank": "none"}) as rag:  # fmt: skip
        run, _ = run_suite(rag, load_suite(suite_path))
        second, _ = run_suite(rag, load_suite(suite_path))
        assert rag.sources()[0].documents == 3
    assert run.items == 2 and run.metrics["hit@1"].mean == 1.0 and run.metrics["ndcg@3"].coverage == 1.0
    assert second.dataset_hash == run.dataset_hash and second.metrics == run.metrics


def test_repeats_name_the_items_that_flip(tmp_path, embedder, entries, suite_file):
    """A model that is right on an item only every other time makes that item flaky."""
    from ragline.eval.compare import flaky

    answer, calls = scripted(entries), {}
    unstable_question = next(iter(entries.values()))["QUESTION"]

    def sometimes(request):
        question = request.messages[-1].content.strip()
        calls[question] = calls.get(question, 0) + 1
        if question == unstable_question and calls[question] % 2 == 0:
            return "Maybe, nobody knows."
        return answer(request)

    suite, store = load_suite(suite_file), tmp_path / "store"
    with ragline.open(store, embedder=embedder, provider=FakeProvider(sometimes), cache={"enabled": False},
                      retrieval={"rerank": "none"}) as rag:  # fmt: skip
        first, _ = run_suite(rag, suite, repeat_group="g1")
        run_suite(rag, suite, repeat_group="g1")
    from ragline.eval.compare import repeat_summary

    runs = RunStore(store)
    try:
        assert flaky(runs, first) == [next(iter(entries))]
        variation = repeat_summary(runs, first)
    finally:
        runs.close()
    assert variation["flip_rate"]["label_accuracy"] == pytest.approx(1 / 20)
    assert variation["item_variance"]["label_accuracy"] == pytest.approx(0.5 / 20)  # one item: 1 then 0


def test_a_dry_run_prices_the_worst_case_without_a_model_call(tmp_path, embedder, suite_file):
    from ragline.eval.harness import worst_case_cost

    suite = load_suite(suite_file)
    fake = FakeProvider(["unused"])
    with ragline.open(tmp_path / "store", embedder=embedder, provider=fake,
                      llm={"price_per_million_input": 1.0, "price_per_million_output": 2.0, "max_tokens": 100}) as rag:  # fmt: skip
        estimate = worst_case_cost(rag, suite)
    assert estimate["items"] == 20 and estimate["calls"] == 20 and fake.calls == 0
    # each call: at least the 100 completion tokens at $2/M and 4 full sources (4 x 1200 chars, 4 bytes each) at $1/M
    assert estimate["worst_case_usd"] > 20 * (100 * 2 + 4 * 1200 * 4) / 1e6
