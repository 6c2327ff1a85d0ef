"""The eval harness against the real local model (the bundled SmolLM2 in llama.cpp), on the
first 20 PubMedQA dev questions: the statistics must hold on free model text, not only on a
scripted one. Slow (about 3 minutes on 2 cores): run with `-m slow`.

What is asserted is what survives any CPU: a template edit that lost the question and the
sources (so the model answers a greeting) is a significant regression on the text metrics;
the good prompt run twice is "no significant change" (its text may differ between runs:
llama.cpp reuses cached prompt prefixes); a replayed run scores exactly as its recording.
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

import ragline
from ragline.eval.compare import compare_runs
from ragline.eval.harness import run_suite
from ragline.eval.runs import RunStore
from ragline.eval.suite import load_suite
from ragline.llm.fake import Fail, FakeProvider

pytestmark = pytest.mark.slow

PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa-dev" / "pqal_dev.json"
BROKEN_TEMPLATE = """{#
description: A broken edit: the template lost the question and the sources.
variables: question, sources
#}
{% block system -%}
You are a friendly greeter.
{%- endblock %}

{% block user %}Say hello.{% endblock %}
"""


@pytest.fixture
def suite_file(tmp_path):
    if not PUBMEDQA.is_file():
        pytest.skip(f"PubMedQA dev set not found at {PUBMEDQA}")
    first20 = dict(list(json.loads(PUBMEDQA.read_text()).items())[:20])
    (tmp_path / "pqal_first20.json").write_text(json.dumps(first20))
    suite = tmp_path / "pubmedqa.toml"
    suite.write_text(
        'name = "pubmedqa"\n[dataset]\nformat = "pubmedqa"\npath = "pqal_first20.json"\n'
        '[pipeline]\nname = "default"\n[metrics]\nnames = ["token_f1", "rouge_l", "hit@3", "citation_validity"]\n'
        "[gate]\nmargin = 0.02\n"
    )
    return suite


def test_live_model_regression_noise_and_replay(tmp_path, embedder, local_llm, suite_file):
    suite, store, prompts = load_suite(suite_file), tmp_path / "store", tmp_path / "prompts"
    cassette = tmp_path / "good.jsonl"
    common = {"prompts": {"dir": str(prompts)}, "cache": {"enabled": False}, "retrieval": {"rerank": "none"},
              "llm": {"max_tokens": 32}}  # fmt: skip

    with ragline.open(store, embedder=embedder, provider=local_llm, replay={"record": str(cassette)}, **common) as rag:
        good, good_items = run_suite(rag, suite)
    with ragline.open(store, embedder=embedder, provider=local_llm, **common) as rag:
        again, _ = run_suite(rag, suite)
    prompts.mkdir(exist_ok=True)
    (prompts / "synthesis.j2").write_text(BROKEN_TEMPLATE)
    with ragline.open(store, embedder=embedder, provider=local_llm, **common) as rag:
        broken, _ = run_suite(rag, suite)

    assert good.answered == again.answered == broken.answered == 20
    assert broken.prompt_versions["synthesis"] != good.prompt_versions["synthesis"]
    runs = RunStore(store)
    try:
        worse = compare_runs(runs, good.run_id, broken.run_id)
        same = compare_runs(runs, good.run_id, again.run_id)
    finally:
        runs.close()
    for name in ("token_f1", "rouge_l"):
        assert worse["metrics"][name]["verdict"] == "worse", (name, worse["metrics"][name])
        assert worse["metrics"][name]["p_value"] < 0.01
        assert same["metrics"][name]["verdict"] == "no significant change", (name, same["metrics"][name])
    assert worse["metrics"]["hit@3"]["delta"] == 0.0  # retrieval does not depend on the prompt
    for metric in [*worse["metrics"].values(), *same["metrics"].values()]:
        assert all(v is None or v == v for v in metric.values() if isinstance(v, float))  # never NaN

    (prompts / "synthesis.j2").unlink()  # back to the recorded prompt version
    # a cassette answers the model identity it recorded: the stand-in must carry that identity
    offline = FakeProvider([Fail("server", status=500)], name=local_llm.name, model=local_llm.model)
    with ragline.open(store, embedder=embedder, provider=offline, replay={"replay": str(cassette)}, **common) as rag:
        replayed, replayed_items = run_suite(rag, suite)
    assert offline.calls == 0 and replayed.metrics == good.metrics
    assert [(i.answer, i.scores) for i in replayed_items] == [(i.answer, i.scores) for i in good_items]
