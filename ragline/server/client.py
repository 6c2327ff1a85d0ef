"""`RemoteRag`: the `Rag` interface over HTTP, for a store another process owns.

`ragline.open(DIR)` returns one when DIR's lock file names a live `ragline serve`;
`ragline.connect(URL, token=...)` builds one for any server. Bodies are the library's own
models, so callers get the same `Answer`, `Hit`, `IngestReport` and `SourceSummary` objects
and the CLI prints the same `--json`; a failure the server reports is raised as
`RemoteError` carrying the server's error object.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx

from ragline.errors import RemoteError
from ragline.ingest.ledger import SourceSummary
from ragline.llm.base import StreamChunk
from ragline.models import Answer, Hit, IngestReport
from ragline.server.security import TOKEN_ENV

TIMEOUT = httpx.Timeout(300.0, connect=5.0)  # answers wait on model calls
POLL_SECONDS = 0.2
# What only the owner process can do: asking a client for it names the owner instead.
LOCAL_ONLY = frozenset({"store", "ledger", "components", "embedder", "reranker", "budget", "check", "optimize",
                        "run_pipeline", "arun_pipeline", "get_pipeline", "prompt", "synthesis_prompt"})  # fmt: skip


class RemoteRag:
    def __init__(self, url: str, *, token: str | None = None, config=None, path: Path | None = None):
        self.url = url.rstrip("/")
        self.config = config
        self.path = path
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=TIMEOUT, trust_env=False)

    def __repr__(self) -> str:
        return f"RemoteRag({self.url!r})"

    def __getattr__(self, name: str):
        if name in LOCAL_ONLY:
            raise RemoteError({"kind": "served", "message": f"`{name}` needs the store itself, which the ragline serve "
                               f"at {self.url} owns: stop that server to use it here"}, 0)  # fmt: skip
        raise AttributeError(name)

    # --- requests ---

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return _checked(response)

    def _unreachable(self, exc: httpx.HTTPError) -> RemoteError:
        return RemoteError({"kind": "connection", "message": f"{self.url} did not answer ({exc})"}, 0)

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    # --- the Rag interface ---

    def retrieve(self, question: str, top_k: int = 10, filters=None, *, mode=None, rerank=None, mmr=None,
                 principals: list[str] | None = None) -> list[Hit]:  # fmt: skip
        body = {"question": question, "top_k": top_k, "filters": filters, "mode": mode, "rerank": rerank, "mmr": mmr,
                "principals": principals}  # fmt: skip
        return [Hit.model_validate(hit) for hit in self._call("POST", "/v1/retrieve", json=body)["hits"]]

    def query(self, question: str, *, top_k: int | None = None, filters=None, cache: bool = True,
              principals: list[str] | None = None) -> Answer:  # fmt: skip
        body = _query(question, top_k, filters, cache, principals)
        return Answer.model_validate(self._call("POST", "/v1/query", json=body))

    async def aquery(self, question: str, *, top_k: int | None = None, filters=None, cache: bool = True,
                     principals: list[str] | None = None) -> Answer:  # fmt: skip
        body = _query(question, top_k, filters, cache, principals)
        async with httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=TIMEOUT, trust_env=False) as http:
            try:
                response = await http.post("/v1/query", json=body)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
        return Answer.model_validate(_checked(response))

    def query_stream(self, question: str, *, top_k: int | None = None, filters=None, cache: bool = True,
                     principals: list[str] | None = None) -> Iterator[StreamChunk | Answer]:  # fmt: skip
        """Text deltas as `StreamChunk`s, then the `Answer` (server-sent events)."""
        body = {**_query(question, top_k, filters, cache, principals), "stream": True}
        with self._http.stream("POST", "/v1/query", json=body) as response:
            if response.status_code >= 400:
                response.read()
                _checked(response)
            for event, data in _events(response.iter_lines()):
                if event == "delta":
                    yield StreamChunk(delta=data["delta"])
                elif event == "answer":
                    yield Answer.model_validate(data)
                elif event == "error":
                    raise RemoteError(data["error"], response.status_code)

    def ingest(self, sources: str | Path | Iterable[str | Path] | None = None, *, show_progress: bool = False,
               allow_mass_delete: bool | None = None, readers: list[str] | None = None) -> IngestReport:  # fmt: skip
        """Start the run on the server and wait for it: paths (on this machine, which is the
        server's when routed by store directory) or, by default, every configured source."""
        if allow_mass_delete:
            raise RemoteError({"kind": "input", "message": "--allow-mass-delete is not available through the "
                               "server; stop `ragline serve` to run it locally"}, 0)  # fmt: skip
        body: dict[str, Any] = {}
        if sources is not None:
            items = [sources] if isinstance(sources, (str, Path)) else list(sources)
            body["paths"] = [str(Path(item).resolve()) for item in items]
        if readers is not None:
            body["readers"] = readers
        runs = self._call("POST", "/v1/ingest", json=body)["runs"]
        report = IngestReport()
        for run in runs:
            report.merge(self._wait(run))
        return report

    def _wait(self, run: dict[str, Any]) -> IngestReport:
        while run["status"] == "running":
            time.sleep(POLL_SECONDS)
            run = self._call("GET", f"/v1/runs/{run['id']}")
        if run.get("report") is not None:
            return IngestReport.model_validate(run["report"])
        return IngestReport(**{k: run.get(k, 0) for k in ("added", "updated", "unchanged", "deleted", "failed")})

    def sources(self) -> list[SourceSummary]:
        return [SourceSummary.model_validate(s) for s in self._call("GET", "/v1/sources")["sources"]]

    def runs(self, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/runs", params={"limit": limit, **({"source": source} if source else {})})["runs"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _query(question: str, top_k: int | None, filters, cache: bool, principals: list[str] | None) -> dict[str, Any]:
    return {"question": question, "top_k": top_k, "filters": filters, "cache": cache, "principals": principals}


def _checked(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        raise RemoteError(error or {"kind": "http", "message": f"the server answered {response.status_code}"},
                          response.status_code)  # fmt: skip
    return data


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as (event, JSON data) pairs."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def connect(url: str, *, token: str | None = None) -> RemoteRag:
    """A client for the `ragline serve` at `url` (token default: `RAGLINE_SERVER_TOKEN`)."""
    return RemoteRag(url, token=token)
