"""`ragline serve` as a real process on 127.0.0.1 owning a real store: other processes and the
CLI are routed to it and get exactly what they get without it; a second server is refused
and the first is unharmed; the token guards every endpoint but /healthz.

The model is a scripted FakeProvider behind a real OpenAI-compatible server, so answers are
deterministic and comparable across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from conftest import ROOT, SAMPLES
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer
from ragline_server import served, start

import ragline
from ragline.llm.fake import FakeProvider
from ragline.models import IngestReport
from ragline.server.client import RemoteRag

QUESTION = "How many days of paid leave do new employees get?"
ENV = {"RAGLINE_TEST_KEY": API_KEY}


@pytest.fixture(scope="module")
def model_server():
    with ProtocolServer(OpenAIHandler, FakeProvider(lambda request: "New employees get 25 days of paid leave [1].",
                                                    model="scripted"), API_KEY) as server:  # fmt: skip
        yield server


@pytest.fixture
def config(tmp_path, model_server):
    path = tmp_path / "ragline.toml"
    path.write_text(
        f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = "{model_server.base_url()}"\n'
        'api_key_env = "RAGLINE_TEST_KEY"\n'
    )
    return path


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragline", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", **ENV, **(env or {})})  # fmt: skip


def test_routed_answers_equal_in_process_ones_and_a_second_server_is_refused(samples_store, config, embedder, monkeypatch):
    monkeypatch.setenv("RAGLINE_TEST_KEY", API_KEY)
    with ragline.open(samples_store, config_file=config, embedder=embedder) as rag:
        local = rag.query(QUESTION, cache=False)
        local_hits = [hit.model_dump(mode="json") for hit in rag.retrieve(QUESTION, top_k=5)]
        local_sources = [s.model_dump(mode="json") for s in rag.sources()]

    with served(samples_store, "--config", str(config), env=ENV) as server:
        with ragline.open(samples_store, config_file=config) as client:
            assert isinstance(client, RemoteRag) and client.url == server.url
            remote = client.query(QUESTION, cache=False)
            streamed = list(client.query_stream(QUESTION, cache=False))
            remote_hits = [hit.model_dump(mode="json") for hit in client.retrieve(QUESTION, top_k=5)]
        assert remote.text == local.text and remote.prompt_version == local.prompt_version
        assert [c.chunk_id for c in remote.citations] == [c.chunk_id for c in local.citations]
        assert [c.chunk_id for c in remote.sources] == [c.chunk_id for c in local.sources]
        assert [h["chunk_id"] for h in remote_hits] == [h["chunk_id"] for h in local_hits]
        final = streamed[-1]
        assert "".join(chunk.delta for chunk in streamed[:-1]) == final.text == local.text
        assert [c.chunk_id for c in final.citations] == [c.chunk_id for c in local.citations]

        trace = httpx.get(f"{server.url}/v1/traces/{remote.trace_id}").json()  # the server recorded that trace
        assert trace["summary"]["trace_id"] == remote.trace_id and trace["summary"]["root_name"] == "query"

        routed = cli("retrieve", QUESTION, "--top-k", "5", "--store", str(samples_store), "--config", str(config), "--json")
        assert routed.returncode == 0, routed.stderr
        assert [h["chunk_id"] for h in json.loads(routed.stdout)["hits"]] == [h["chunk_id"] for h in local_hits]
        listed = cli("sources", "--store", str(samples_store), "--json")
        assert json.loads(listed.stdout) == {"sources": local_sources}
        again = cli("ingest", str(SAMPLES), "--store", str(samples_store), "--config", str(config), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == IngestReport(unchanged=local_sources[0]["documents"]).model_dump(mode="json")
        runs = httpx.get(f"{server.url}/v1/runs").json()["runs"]
        assert runs[0]["trigger"] == "api" and runs[0]["status"] == "succeeded" and runs[0]["report"]["unchanged"] > 0

        with pytest.raises(RuntimeError) as refused:  # the second owner fails before binding anything
            start(samples_store, "--config", str(config), env=ENV)
        assert f"already served at {server.url}" in str(refused.value)
        assert client_health(server.url)["status"] == "ok"
        answered = httpx.post(f"{server.url}/v1/query", json={"question": QUESTION, "cache": False}, timeout=60)
        assert answered.json()["text"] == local.text

        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        assert {"/v1/query", "/v1/retrieve", "/v1/ingest", "/v1/runs", "/v1/runs/{run_id}", "/v1/sources",
                "/v1/traces/{trace_id}", "/healthz", "/metrics"} <= set(paths)  # fmt: skip
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'ragline_requests_total{endpoint="query",outcome="ok"}' in metrics
        assert "ragline_request_seconds_bucket" in metrics and "ragline_documents 6.0" in metrics


def client_health(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=10).json()


def test_the_token_guards_every_endpoint_but_health(samples_store, config):
    token = "ragline-server-token-51b2"
    with served(samples_store, "--config", str(config), env={**ENV, "RAGLINE_SERVER_TOKEN": token}) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        denied = httpx.get(f"{server.url}/v1/sources")
        assert denied.status_code == 401 and denied.json()["error"]["kind"] == "auth" and token not in denied.text
        assert httpx.get(f"{server.url}/v1/sources", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = httpx.get(f"{server.url}/v1/sources", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and allowed.json()["sources"]
        with ragline.connect(server.url, token=token) as client:
            assert [s.source for s in client.sources()] == [s["source"] for s in allowed.json()["sources"]]


def test_binding_beyond_loopback_needs_a_token(samples_store):
    refused = cli("serve", "--store", str(samples_store), "--host", "0.0.0.0", "--port", "0",
                  env={"RAGLINE_SERVER_TOKEN": ""})  # refused before anything is bound
    assert refused.returncode != 0 and "RAGLINE_SERVER_TOKEN" in refused.stderr


def test_fuzzing_the_openapi_document_finds_no_server_error(samples_store, config, tmp_path):
    """schemathesis against /openapi.json: no 5xx and no stack trace in any body. Ingest is
    left out: it would ingest whatever paths the fuzzer invents on this machine."""
    with served(samples_store, "--config", str(config), "--no-schedules", env=ENV) as server:
        fuzz = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "25", "--seed", "7",
             "--exclude-path", "/v1/ingest", "--request-timeout", "60"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,  # it writes .schemathesis/ there
        )  # fmt: skip
        assert fuzz.returncode == 0, fuzz.stdout[-4000:] + fuzz.stderr[-2000:]
        assert "Traceback" not in server.log()


def test_the_listening_socket_gives_responses_tcp_nodelay():
    """asyncio sets TCP_NODELAY only on accepted sockets whose protocol says TCP; a socket made
    with proto 0 left Nagle on and every response waited 40 ms for a delayed ACK."""
    import socket

    from ragline.server.serve import bind

    listening = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(listening.getsockname()):
            accepted, _ = listening.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        listening.close()
