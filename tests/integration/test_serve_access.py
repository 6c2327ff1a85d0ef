"""Access control through `ragline serve`: a real server process with `[access] enabled`
refuses calls without an identity, filters what each principal retrieves and is answered,
over plain JSON, server-sent events and a routed `RemoteRag`, and shows a trace only to a
caller who may read every chunk in it."""

from __future__ import annotations

import httpx
from items_connector import TOKEN, ItemsConnector
from protocol_servers import API_KEY, OpenAIHandler, ProtocolServer
from ragline_server import served

import ragline
from ragline.llm.fake import FakeProvider
from ragline.server.client import RemoteRag

ENV = {"RAGLINE_TEST_KEY": API_KEY}
DOCS = {
    "salaries": ("Memo docid-1: the salary bands of every team for 2027.", ["group:hr"]),
    "holidays": ("Memo docid-2: the vacation policy and the salary calendar.", ["public"]),
}
QUESTION = "What are the salary bands?"


def _echo(request) -> str:
    return f"Found {' '.join(sorted(set(TOKEN.findall(request.messages[-1].content))))} [1]."


def test_the_server_filters_by_principal_and_refuses_anonymous_calls(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("RAGLINE_TEST_KEY", API_KEY)
    store, groups, config = tmp_path / "store", tmp_path / "groups.toml", tmp_path / "ragline.toml"
    groups.write_text('[groups]\n"group:hr" = ["user:hana"]\n')
    with ProtocolServer(OpenAIHandler, FakeProvider(_echo, model="scripted"), API_KEY) as model:
        config.write_text(
            f'[llm]\nprovider = "openai"\nmodel = "scripted"\nbase_url = "{model.base_url()}"\n'
            f'api_key_env = "RAGLINE_TEST_KEY"\n[access]\nenabled = true\ngroups_file = "{groups}"\n'
        )
        with ragline.open(store, config_file=config, embedder=embedder) as rag:
            rag.ingest(ItemsConnector("memos", DOCS))
            local = [h.chunk_id for h in rag.retrieve(QUESTION, top_k=5, principals=["user:olga"])]

        with served(store, "--config", str(config), env=ENV) as server:
            anonymous = httpx.post(f"{server.url}/v1/retrieve", json={"question": QUESTION})
            assert anonymous.status_code == 403 and anonymous.json()["error"]["kind"] == "access"
            malformed = httpx.post(f"{server.url}/v1/retrieve", json={"question": QUESTION, "principals": ["hana"]})
            assert malformed.status_code == 403 and "malformed" in malformed.json()["error"]["message"]

            def retrieved(principal: str) -> set[str]:
                body = {"question": QUESTION, "principals": [principal]}
                return {h["document_id"] for h in httpx.post(f"{server.url}/v1/retrieve", json=body).json()["hits"]}

            assert retrieved("user:hana") == {"salaries", "holidays"} and retrieved("user:olga") == {"holidays"}

            answered = httpx.post(f"{server.url}/v1/query", json={"question": QUESTION, "principals": ["user:olga"]},
                                  timeout=120).json()  # fmt: skip
            assert "docid-1" not in answered["text"] and {s["document_id"] for s in answered["sources"]} == {"holidays"}
            with httpx.stream("POST", f"{server.url}/v1/query", timeout=120,
                              json={"question": QUESTION, "stream": True, "principals": ["user:olga"]}) as events:  # fmt: skip
                streamed = events.read().decode()
            assert "docid-1" not in streamed and "event: answer" in streamed

            hana = httpx.post(f"{server.url}/v1/query", json={"question": QUESTION, "principals": ["user:hana"]},
                              timeout=120).json()  # fmt: skip
            trace = f"{server.url}/v1/traces/{hana['trace_id']}"
            assert httpx.get(trace, params={"principals": "user:hana"}).status_code == 200
            assert httpx.get(trace, params={"principals": "user:olga"}).status_code == 403
            assert httpx.get(trace).status_code == 403  # no identity at all
            page = httpx.get(f"{server.url}/traces/{hana['trace_id']}", params={"principals": "user:olga"})
            assert page.status_code == 403

            with ragline.open(store, config_file=config) as client:
                assert isinstance(client, RemoteRag)
                assert [h.chunk_id for h in client.retrieve(QUESTION, top_k=5, principals=["user:olga"])] == local
