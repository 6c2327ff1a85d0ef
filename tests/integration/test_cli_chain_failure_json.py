"""`ragline query --json` when no provider answers: one JSON error object on stdout carrying
every attempt of the chain, exit 1. The provider is an OpenAI-compatible server on 127.0.0.1
that answers 500 to everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer

from ragline.llm.fake import FakeProvider


def test_a_chain_failure_is_one_json_object_with_the_attempts(samples_store, tmp_path) -> None:
    with ProtocolServer(OpenAIHandler, FakeProvider(), API_KEY) as server:
        config = tmp_path / "ragline.toml"
        config.write_text(
            f'[llm]\nprovider = "openai"\nmodel = "m"\nbase_url = "{server.base_url("boom")}"\n'
            'api_key_env = "RAGLINE_TEST_KEY"\n\n[reliability]\nretries_per_provider = 1\nbackoff_base = 0.01\n'
        )
        run = subprocess.run(
            [sys.executable, "-m", "ragline", "query", "How much paid leave?", "--store", str(samples_store),
             "--config", str(config), "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "RAGLINE_TEST_KEY": API_KEY},
        )  # fmt: skip
    assert run.returncode == 1, run.stderr
    (line,) = run.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error["kind"] == "server" and error["status"] == 500
    assert [(a["outcome"], a["status"]) for a in error["attempts"]] == [("error", 500), ("error", 500)]
    assert API_KEY not in run.stdout + run.stderr
