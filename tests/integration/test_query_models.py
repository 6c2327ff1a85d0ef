"""`[[models]]`, `[reliability]`, `[cache]` and `[budget]` from configuration, end to end through
`Rag.query` and the CLI: a real llama_cpp.server behind fault proxies on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from fault_proxy import FaultProxy

import ragline
from ragline.llm.budget import BudgetExceeded

QUESTION = "How many days of paid leave do new employees get?"
API_KEY = "sk-file-secret-0b1c2d3e4f"


@pytest.fixture
def store(samples_store):
    return samples_store


def models(primary: FaultProxy, backup: FaultProxy, **extra) -> list[dict]:
    common = {"provider": "openai", "model": "smollm2", "price_per_million_input": 100.0,
              "price_per_million_output": 400.0, **extra}  # fmt: skip
    return [{"name": "primary", "base_url": primary.url, **common}, {"name": "backup", "base_url": backup.url, **common}]


def open_rag(store, embedder, primary, backup, **overrides):
    settings = {
        "models": models(primary, backup),
        "reliability": {"backoff_base": 0.01, "retries_per_provider": 0},
        "llm": {"max_tokens": 16},
        **overrides,
    }
    return ragline.open(store, embedder=embedder, **settings)


def test_configured_chain_falls_back_then_answers_from_cache(store, embedder, primary, backup, tmp_path) -> None:
    primary.script(["status:503"])
    with open_rag(store, embedder, primary, backup) as rag:
        first = rag.query(QUESTION)
        assert first.provider == "backup" and not first.cached and first.text
        assert [(a.provider, a.outcome, a.error_kind) for a in first.attempts] == [
            ("primary", "error", "server"), ("backup", "ok", None),
        ]  # fmt: skip
        assert first.cost_usd > 0
        asked = len(primary.log) + len(backup.log)

        again = rag.query(QUESTION)
        assert again.cached and again.text == first.text and again.cost_usd == 0.0 and again.attempts == []
        assert [c.chunk_id for c in again.citations] == [c.chunk_id for c in first.citations]
        assert len(primary.log) + len(backup.log) == asked  # no model call for a hit

        fresh = rag.query(QUESTION, cache=False)
        assert fresh.provider == "primary" and not fresh.cached
        assert rag.budget.run.spent == pytest.approx(first.cost_usd + fresh.cost_usd)


def test_configured_query_ceiling_refuses_before_calling(store, embedder, primary, backup) -> None:
    with open_rag(store, embedder, primary, backup, budget={"per_query_usd": 1e-6}, cache={"enabled": False}) as rag:
        with pytest.raises(BudgetExceeded, match="per_query_usd"):
            rag.query(QUESTION)
        assert rag.budget.run.spent == 0.0
    assert primary.log == [] and backup.log == []


def test_async_queries_run_concurrently(store, embedder, primary, backup) -> None:
    primary.script(["status:500"])

    async def ask_all(rag):
        return await asyncio.gather(*(rag.aquery(f"{QUESTION} ({i})", cache=False) for i in range(4)))

    with open_rag(store, embedder, primary, backup) as rag:
        answers = asyncio.run(ask_all(rag))
    assert all(a.text and a.sources for a in answers)
    assert sorted(a.provider for a in answers).count("backup") == 1


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ragline", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )  # fmt: skip


def test_cli_models_from_toml_cache_and_secret_file(store, primary, backup, tmp_path) -> None:
    key_file = tmp_path / "openai.key"
    key_file.write_text(API_KEY + "\n")
    entries = models(primary, backup, api_key_file=str(key_file))
    toml = "[llm]\nmax_tokens = 12\n\n[reliability]\nbackoff_base = 0.01\nretries_per_provider = 0\n"
    for entry in entries:
        toml += "\n[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    config = tmp_path / "ragline.toml"
    config.write_text(toml)

    primary.script(["status:401"])  # auth errors do not fall back: the CLI reports it
    failed = _cli("query", QUESTION, "--store", str(store), "--config", str(config), "--json")
    assert failed.returncode == 1 and "401" in failed.stderr
    assert API_KEY not in failed.stderr + failed.stdout

    runs = [_cli("query", QUESTION, "--store", str(store), "--config", str(config), "--json") for _ in range(2)]
    runs.append(_cli("query", QUESTION, "--store", str(store), "--config", str(config), "--json", "--no-cache"))
    answers = []
    for run in runs:
        assert run.returncode == 0, run.stderr
        answers.append(json.loads(run.stdout))
    assert [a["cached"] for a in answers] == [False, True, False]
    assert answers[0]["provider"] == "primary" and answers[1]["attempts"] == []
    assert answers[0]["answer"] == answers[1]["answer"]
    assert all(API_KEY not in run.stdout + run.stderr for run in runs)
