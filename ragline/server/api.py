"""The HTTP API of the process that owns a store (`ragline serve`): a FastAPI app over one
`Rag`, its run history, source runner and scheduler.

Every body is the JSON the library's own models dump, so a client rebuilds exactly the
`Answer`, `Hit` and `IngestReport` an in-process caller gets, and the CLI prints the same
`--json` through either. Errors are `{"error": {"kind", "message"}}` with no stack trace.
Blocking work (retrieval, model calls, SQLite) runs in Starlette's worker threads.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from ragline.access.principals import AccessError
from ragline.access.traces import check_trace_readable
from ragline.connectors.base import ConnectorError
from ragline.error_report import error_json
from ragline.errors import SharedStateError, StoreBusyError, StoreError
from ragline.llm.base import ProviderError
from ragline.llm.budget import BudgetExceeded
from ragline.models import Answer
from ragline.retrieval.store import Filters
from ragline.server.metrics import ServerMetrics
from ragline.server.security import TokenGuard
from ragline.server.status_page import status_page
from ragline.tracing.render import trace_html
from ragline.tracing.store import Trace, TraceNotFound, TraceStore, trace_json

log = logging.getLogger(__name__)
MAX_TOP_K = 100
QUERY_PATHS = frozenset({"/v1/query", "/v1/retrieve"})
Principals = Annotated[
    list[str] | None,
    Field(description='Whom the call is for, e.g. ["user:hana", "group:hr"] (access control; groups are also '
          "resolved by the server's [access] resolver). Required when the server has [access] enabled."),
]


class RetrieveRequest(BaseModel):
    question: str = Field(min_length=1)
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    filters: Filters | None = None
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    rerank: bool | None = None
    mmr: bool | None = None
    principals: Principals = None


class QueryRequest(BaseModel):
    question: str = Field(min_length=1)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    filters: Filters | None = None
    cache: bool = True
    stream: bool = Field(False, description="Answer as server-sent events: `delta` events, then one `answer`.")
    principals: Principals = None


class IngestRequest(BaseModel):
    source: str | None = Field(None, description="A configured [[sources]] name; omitted: every configured source.")
    paths: list[str] | None = Field(None, description="Files or folders on the server's machine (loopback clients only).")
    readers: list[str] | None = Field(None, description="Default readers of the `paths` documents (as `ragline ingest --readers`).")


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message, **extra}}, status_code=status)


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and `error` object (the CLI's `--json` error) for a failure a request ends with."""
    if isinstance(exc, (BudgetExceeded, ProviderError, StoreError, StoreBusyError, ValueError, AccessError,
                        SharedStateError)):  # fmt: skip
        body = error_json(exc)["error"]
        return _STATUS.get(body["kind"], 502 if isinstance(exc, ProviderError) else 400), body
    return 500, {"kind": "internal", "message": f"{type(exc).__name__}: the server logged the details"}


_STATUS = {"budget": 402, "shared_state": 503, "store": 503, "store_busy": 503, "config": 400, "error": 400, "access": 403}


def create_app(service) -> FastAPI:
    """`service` (`ragline.server.service.StoreService`) holds the open store and its parts."""
    app = FastAPI(title="ragline", version=service.version, docs_url=None, redoc_url=None)
    metrics = ServerMetrics(service)
    guard = TokenGuard(service.token)

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        if not guard.allows(request):
            return _error(401, "auth", "missing or wrong bearer token (RAGLINE_SERVER_TOKEN)")
        if request.url.path in QUERY_PATHS:
            service.touch()
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return _error(422, "input", "the request does not match the API", problems=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        status, body = error_body(exc)
        if status == 500:
            log.exception("request %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": body}, status_code=status)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": service.version, "models_loaded": service.models_loaded.is_set(),
                "running": service.runner.running()}  # fmt: skip

    @app.post("/v1/retrieve")
    def retrieve(body: RetrieveRequest) -> dict[str, Any]:
        with metrics.timed("retrieve"):
            hits = service.rag.retrieve(body.question, top_k=body.top_k, filters=body.filters, mode=body.mode,
                                        rerank=body.rerank, mmr=body.mmr, principals=body.principals)  # fmt: skip
        return {"hits": [hit.model_dump(mode="json") for hit in hits]}

    @app.post("/v1/query")
    def query(body: QueryRequest):
        if body.stream:
            return StreamingResponse(_events(body), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip
        with metrics.timed("query"):
            answer = service.rag.query(body.question, top_k=body.top_k, filters=body.filters, cache=body.cache,
                                       principals=body.principals)  # fmt: skip
        metrics.answered(answer)
        return answer.model_dump(mode="json")

    def _events(body: QueryRequest) -> Iterator[str]:
        started = time.perf_counter()
        try:
            for event in service.rag.query_stream(body.question, top_k=body.top_k, filters=body.filters,
                                                  cache=body.cache, principals=body.principals):  # fmt: skip
                if isinstance(event, Answer):
                    metrics.answered(event)
                    yield _sse("answer", event.model_dump(mode="json"))
                else:
                    yield _sse("delta", {"delta": event.delta})
            metrics.observe("query_stream", time.perf_counter() - started, "ok")
        except Exception as exc:  # the status line is sent: the failure becomes the last event
            metrics.observe("query_stream", time.perf_counter() - started, "error")
            status, error = error_body(exc)
            if status == 500:
                log.exception("streamed query failed")
            partial = getattr(exc, "partial_text", None)
            yield _sse("error", {"error": {**error, **({"partial_text": partial} if partial else {})}})

    @app.post("/v1/ingest", status_code=202)
    def ingest(body: IngestRequest, request: Request) -> dict[str, Any]:
        if body.paths and not guard.is_loopback(request):
            return _error(403, "forbidden", "ingesting server paths is allowed from loopback clients only")
        if body.paths:
            try:
                runs = service.start_paths([Path(p) for p in body.paths], body.readers)
            except ConnectorError as exc:
                return _error(400, "input", str(exc))
        else:
            configured = service.runner.names()
            if body.source is not None and body.source not in configured:
                raise HTTPException(404, f"no source named {body.source!r}; configured: {', '.join(configured) or 'none'}")
            names = [body.source] if body.source else configured
            runs = [service.start_source(name) for name in names]
        return {"runs": [service.run_json(run) for run in runs], "run_id": runs[0].id if runs else None}

    @app.get("/v1/runs")
    def runs(source: str | None = None, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        return {"runs": [service.run_json(run) for run in service.history.runs(source, limit=limit)]}

    @app.get("/v1/runs/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        found = service.history.get(run_id)
        if found is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return service.run_json(found)

    @app.get("/v1/sources")
    def sources() -> dict[str, Any]:
        return {"sources": [s.model_dump(mode="json") for s in service.rag.sources()]}

    @app.get("/v1/schedules")
    def schedules() -> dict[str, Any]:
        firing = service.schedules_enabled and service.scheduler.firing  # replicas: only the lease holder
        return {"schedules": service.scheduler.schedules(), "firing": firing}

    def load_trace(trace_id: str, principals: list[str] | None) -> Trace:
        """A trace, shown only to callers who may read every chunk in it (`ragline.access.traces`)."""
        viewer = service.rag.components.access.viewer(principals)
        try:
            reader = TraceStore.in_store(service.rag.path)
        except FileNotFoundError:
            raise HTTPException(404, "no traces recorded yet") from None
        try:
            trace = reader.load(trace_id)
        except TraceNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        finally:
            reader.close()
        check_trace_readable(trace, viewer)
        return trace

    @app.get("/v1/traces/{trace_id}")
    def trace(trace_id: str, principals: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        return trace_json(load_trace(trace_id, principals))

    @app.get("/traces/{trace_id}", response_class=HTMLResponse)
    def trace_page(trace_id: str, principals: Annotated[list[str] | None, Query()] = None) -> HTMLResponse:
        """The trace's waterfall page (the one `ragline traces export` writes)."""
        return HTMLResponse(trace_html(load_trace(trace_id, principals)))

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse)
    def status() -> HTMLResponse:
        return HTMLResponse(status_page(service))

    return app


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
