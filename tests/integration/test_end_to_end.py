"""End to end: ingest real documents, retrieve, and answer with citations through
(a) in-process llama.cpp and (b) a real llama_cpp.server reached over HTTP; the CLI's
`--json` shapes are checked on the real console entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES

import ragline
from ragline.llm.providers.openai import OpenAIProvider

QUESTION = "How many days of paid leave do new employees get?"
EXPECTED_DOCUMENT = "employee-handbook.md"
EXAMPLE_FILES = ["pdf/fake-memo.pdf", "fake-html.html", "simple.docx", "eml/fake-email.eml"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, example_docs):
    """The committed sample corpus plus a few real documents from the shared example docs."""
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copytree(SAMPLES, folder, dirs_exist_ok=True)
    for name in EXAMPLE_FILES:
        shutil.copy(example_docs / "files" / name, folder)
    return folder


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, corpus, embedder):
    path = tmp_path_factory.mktemp("store")
    with ragline.open(path, embedder=embedder) as rag:
        report = rag.ingest(corpus)
    assert report.failed == 0, report.errors
    assert report.added == len([p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")])
    return path


def _check_answer(answer: ragline.Answer) -> None:
    assert answer.text.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", answer.trace_id)
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    assert [s.n for s in answer.sources] == list(range(1, len(answer.sources) + 1))
    assert answer.sources[0].document_id == EXPECTED_DOCUMENT
    by_number = {s.n: s for s in answer.sources}
    for citation in answer.citations:  # every citation is the chunk shown as source n
        assert by_number[citation.n].chunk_id == citation.chunk_id
        if not answer.citations_attributed:
            assert re.search(rf"\[[\d,\s]*\b{citation.n}\b[\d,\s]*\]", answer.text)


def test_retrieve_finds_the_right_document(store_dir, embedder):
    with ragline.open(store_dir, embedder=embedder) as rag:
        hits = rag.retrieve(QUESTION, top_k=5)
    assert hits[0].document_id == EXPECTED_DOCUMENT
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {"title", "source", "page_number", "element_type"} <= set(hits[0].metadata)


def test_query_in_process_llamacpp(store_dir, embedder, local_llm):
    with ragline.open(store_dir, embedder=embedder, provider=local_llm) as rag:
        answer = rag.query(QUESTION)
    _check_answer(answer)
    assert answer.model == local_llm.model
    assert answer.cost_usd == 0.0


def test_query_through_openai_compatible_server(store_dir, embedder, llama_server_url):
    provider = OpenAIProvider("smollm2", base_url=llama_server_url)
    with ragline.open(
        store_dir, embedder=embedder, provider=provider,
        llm={"price_per_million_input": 1.0, "price_per_million_output": 2.0},
    ) as rag:
        streamed = list(rag.query_stream(QUESTION))
    provider.close()
    answer = streamed[-1]
    assert isinstance(answer, ragline.Answer)
    _check_answer(answer)
    assert "".join(event.delta for event in streamed[:-1]).strip() == answer.text
    expected_cost = (answer.usage.prompt_tokens * 1.0 + answer.usage.completion_tokens * 2.0) / 1e6
    assert answer.cost_usd == pytest.approx(expected_cost)


def test_empty_store_answers_without_calling_a_model(tmp_path, embedder):
    with ragline.open(tmp_path / "empty", embedder=embedder) as rag:
        assert rag.retrieve("anything") == []
        answer = rag.query("anything")
    assert answer.model == "none" and answer.citations == [] and answer.text


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ragline", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_cli_json_shapes(tmp_path, corpus, llama_server_url):
    store = str(tmp_path / "cli-store")
    result = _cli("ingest", str(corpus), "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # the whole of stdout is one JSON object
    # The shape, plus (additively) how many documents reconciliation re-processed or adopted.
    assert set(report) == {"added", "updated", "unchanged", "deleted", "failed", "chunks_embedded", "reconciled", "errors"}
    assert report["added"] > 0 and report["failed"] == 0 and report["errors"] == []

    result = _cli("retrieve", QUESTION, "--store", store, "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3
    assert all(set(hit) == {"document_id", "chunk_id", "score", "text", "metadata"} for hit in hits)
    assert hits[0]["document_id"] == EXPECTED_DOCUMENT

    env = {"RAGLINE_LLM__PROVIDER": "openai", "RAGLINE_LLM__MODEL": "smollm2",
           "RAGLINE_LLM__BASE_URL": llama_server_url, "RAGLINE_LLM__MAX_TOKENS": "48"}
    result = _cli("query", QUESTION, "--store", store, "--json", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    # The shape, plus (additively) who answered, whether from cache, and every try.
    assert set(answer) == {
        "answer", "citations", "model", "usage", "cost_usd", "trace_id", "provider", "cached", "attempts", "prompt_version",
    }  # fmt: skip
    assert answer["answer"] and answer["model"] == "smollm2"
    assert answer["provider"] == "openai" and answer["cached"] is False
    assert [a["outcome"] for a in answer["attempts"]] == ["ok"]
    assert all(set(c) == {"n", "document_id", "chunk_id", "text"} for c in answer["citations"])
    assert answer["usage"]["prompt_tokens"] > 0


def test_cli_ingest_partial_failure_exit_code(tmp_path, example_docs):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(example_docs / "files" / "README.md", folder)
    shutil.copy(example_docs / "files" / "pdf" / "password.pdf", folder)
    result = _cli("ingest", str(folder), "--store", str(tmp_path / "s"), "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["failed"]) == (1, 1)
    assert report["errors"][0]["document"].endswith("password.pdf")
