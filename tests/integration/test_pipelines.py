"""Query pipelines defined in YAML: a branch and a fan-out, run sync and async over a real store
with the real in-process SmolLM2, round-tripped through dicts and files, traced step by step."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

import ragline
from ragline.pipelines.pipeline import Pipeline, PipelineError, load_pipeline
from ragline.pipelines.steps import Branch, NoHits, Parallel, Respond, Retrieve, RewriteQuery, Synthesize
from ragline.retrieval.fusion import fuse
from ragline.tracing.store import TraceStore

QUESTION = "How many days of paid leave do new employees get?"
NOT_FOUND = "Nothing in the documents answers this."
GUARDED = f"""
name: guarded
description: Dense and sparse in parallel; no LLM call when nothing matches.
steps:
  - kind: parallel
    branches:
      - [{{kind: retrieve, mode: dense, top_k: 10}}]
      - [{{kind: retrieve, mode: sparse, top_k: 10}}]
  - kind: branch
    when: {{kind: no_hits}}
    then: [{{kind: respond, text: "{NOT_FOUND}"}}]
  - kind: rerank
    top_n: 10
  - kind: synthesize
    top_k: 3
    max_tokens: 24
"""
FILTERED_OUT = GUARDED.replace("top_k: 10}", "top_k: 10, filters: {source: nowhere}}")


@pytest.fixture
def store(samples_store):
    return samples_store


@pytest.fixture
def pipelines(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "guarded.yaml").write_text(GUARDED)
    (folder / "filtered.yaml").write_text(FILTERED_OUT.replace("name: guarded", "name: filtered"))
    return folder


def open_rag(store, embedder, local_llm, pipelines):
    return ragline.open(store, embedder=embedder, provider=local_llm, pipelines={"dir": str(pipelines)}, cache={"enabled": False})


def test_yaml_round_trips_identically(pipelines, tmp_path) -> None:
    loaded = load_pipeline(pipelines / "guarded.yaml")
    assert [step.kind for step in loaded.steps] == ["parallel", "branch", "rerank", "synthesize"]
    assert isinstance(loaded.steps[1], Branch) and isinstance(loaded.steps[1].when, NoHits)
    assert Pipeline.from_dict(loaded.to_dict()) == loaded
    assert loaded.to_dict() == yaml.safe_load(GUARDED)  # only what the file said, nothing added
    written = tmp_path / "again.yaml"
    loaded.dump(written)
    assert load_pipeline(written) == loaded
    toml = tmp_path / "again.toml"
    toml.write_text('name = "t"\n[[steps]]\nkind = "retrieve"\n[[steps]]\nkind = "synthesize"\n')
    assert [s.kind for s in load_pipeline(toml).steps] == ["retrieve", "synthesize"]


def test_python_definition_matches_the_file() -> None:
    built = Pipeline(
        name="p",
        steps=[
            RewriteQuery(strategy="hyde"),
            Parallel(branches=[[Retrieve(mode="dense")], [Retrieve(mode="sparse", top_k=5)]], merge="concat"),
            Branch(when=NoHits(), then=[Respond(text="no")]),
            Synthesize(max_tokens=20),
        ],
    )
    assert Pipeline.from_dict(json.loads(json.dumps(built.to_dict()))) == built


def test_invalid_files_name_the_field(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - kind: retrieve\n    top_k: 0\n  - kind: teleport\n")
    with pytest.raises(PipelineError, match=r"bad.yaml.*steps\.0\.retrieve\.top_k"):
        load_pipeline(bad)
    with pytest.raises(PipelineError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")


def test_fuse_merges_rankings_by_reciprocal_rank() -> None:
    from ragline.models import Hit

    def hits(*ids):
        return [Hit(document_id=i, chunk_id=i, score=1.0, text=i) for i in ids]

    fused = fuse([hits("a", "b", "c"), hits("b", "d")])
    assert [h.chunk_id for h in fused] == ["b", "a", "d", "c"]


def test_branch_and_fan_out_answer_and_trace(store, embedder, local_llm, pipelines) -> None:
    with open_rag(store, embedder, local_llm, pipelines) as rag:
        answer = rag.run_pipeline("guarded", QUESTION)
        nothing = rag.run_pipeline("filtered", QUESTION)
    assert answer.text and answer.model == local_llm.model
    assert len(answer.sources) == 3 and answer.sources[0].document_id.endswith("employee-handbook.md")
    assert nothing.text == NOT_FOUND and nothing.model == "none" and nothing.usage.total_tokens == 0

    traces = TraceStore(store / "traces.sqlite")
    (root,) = traces.load(answer.trace_id).roots
    assert root.name == "pipeline guarded"
    assert [c.name for c in root.children] == ["step parallel", "step branch", "step rerank", "step synthesize"]
    assert root.children[2].attributes["ragline.rerank.document_ids"][0] == answer.sources[0].document_id
    parallel = root.children[0]
    assert sorted(c.name for c in parallel.children) == ["step retrieve", "step retrieve"]  # both branches, one trace
    assert root.children[-1].children[0].name == f"chat {local_llm.model}"
    (root,) = traces.load(nothing.trace_id).roots
    assert [c.name for c in root.children] == ["step parallel", "step branch"]
    assert not any(span.name.startswith("chat") for _, span in root.walk())  # no LLM call when nothing matched


def test_async_run_matches_sync(store, embedder, local_llm, pipelines) -> None:
    with open_rag(store, embedder, local_llm, pipelines) as rag:
        sync = rag.run_pipeline("guarded", QUESTION)
        answers = asyncio.run(_gather(rag, "guarded", QUESTION, 2))
    # The same retrieval, so the same sources; the text is the model's and is not compared
    # across calls (llama.cpp's prompt-prefix reuse changes its arithmetic between requests).
    assert all(a.text and a.sources == sync.sources for a in answers)
    assert len({a.trace_id for a in answers}) == 2


async def _gather(rag, name, question, n):
    return await asyncio.gather(*(rag.arun_pipeline(name, question) for _ in range(n)))


def test_multi_query_rewrite_searches_every_variant(store, embedder, local_llm, pipelines) -> None:
    pipeline = Pipeline(
        name="rewrite",
        steps=[RewriteQuery(strategy="multi_query", n=2, max_tokens=48), Retrieve(top_k=5), Synthesize(max_tokens=16)],
    )
    with open_rag(store, embedder, local_llm, pipelines) as rag:
        answer = rag.run_pipeline(pipeline, QUESTION)
    (root,) = TraceStore(store / "traces.sqlite").load(answer.trace_id).roots
    rewrite = root.children[0]
    assert rewrite.name == "step rewrite"
    assert rewrite.children[0].attributes["ragline.prompt.version"].startswith("multi_query@")
    assert answer.prompt_version.startswith("synthesis@")


def test_cli_pipeline_run_show_list(store, pipelines, tmp_path) -> None:
    config = tmp_path / "ragline.toml"
    config.write_text(f'[pipelines]\ndir = "{pipelines}"\n\n[llm]\nmax_tokens = 12\n')

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "ragline", "pipeline", *args, "--store", str(store), "--config", str(config)],
            capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip

    ran = cli("run", "filtered", QUESTION, "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["answer"] == NOT_FOUND
    shown = cli("show", "guarded", "--json")
    assert json.loads(shown.stdout) == yaml.safe_load(GUARDED)
    listed = json.loads(cli("list", "--json").stdout)["pipelines"]
    assert {p["name"] for p in listed} == {"guarded", "filtered", "default"}
    missing = cli("run", "nope", QUESTION)
    assert missing.returncode == 1 and "no pipeline 'nope'" in missing.stderr
