"""A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1 for the reliability tests.

Why a real proxy: the retry, fallback, circuit-breaker and streaming rules of issue #5 must be
proven against real sockets (timeouts, resets, half-sent streams), not mocked transports. The
proxy sits between a provider client and a real upstream (e.g. `llama_cpp.server`) and, per
request, either forwards it untouched or injects one fault chosen by a plan the test controls.

    with FaultProxy("http://127.0.0.1:8080/v1") as proxy:
        proxy.script(["status:429:retry_after=2", "pass"])   # next two requests, in order
        proxy.set_default(fault="status:500", rate=0.3, seed=7)  # every request after that
        client = OpenAICompatProvider(base_url=proxy.url, ...)  # proxy.url ends in "/v1" too
        ...
        assert proxy.count("status:429") == 1

Fault grammar (`Fault.parse`):
    pass                         forward unchanged
    status:CODE[:OPT]...         answer CODE with an OpenAI-shaped JSON error; OPT is one of
                                 retry_after=SECONDS, type=ERROR_TYPE, body=none (empty body),
                                 message=TEXT (last: it takes the rest of the string, colons too)
    hang                         read the request, never answer (until the client leaves or stop())
    reset                        read the request, then close with a TCP RST, no response
    drop_stream_after=N          forward, but RST right after N SSE events carrying `data:`
    malformed                    answer 200 application/json with a body that is not JSON
    delay=SECONDS                wait, then forward

The server is asyncio streams in a background thread with its own loop, so sync and async
tests both use it; each connection is one task, so a hanging request blocks nobody else.
Connections are kept alive (Content-Length or chunked request bodies; responses re-framed).
Upstream bodies are relayed with `aiter_raw` chunk by chunk, so SSE flows as it is produced.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal
from urllib.parse import urlsplit

import httpx

FaultKind = Literal["pass", "status", "hang", "reset", "drop_stream", "malformed", "delay"]

# Not forwarded in either direction: they describe one hop, and the proxy frames its own.
_HOP_HEADERS = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip
_DEFAULT_ERRORS = {  # code -> (type, message), in the shape OpenAI-compatible servers use
    400: ("invalid_request_error", "This model's maximum context length is 2048 tokens. "
          "However, your messages resulted in 4096 tokens. Please reduce the length."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    429: ("rate_limit_exceeded", "Rate limit reached. Please try again later."),
}  # fmt: skip
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_UPSTREAM_IDLE = 2.0  # seconds an idle upstream connection is kept; below the upstream's keep-alive


@dataclass(frozen=True)
class Fault:
    """One injected behaviour; build it with `Fault.parse("status:429:retry_after=2")`."""

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    error_type: str | None = None
    message: str | None = None
    with_body: bool = True
    events: int = 0
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The label used in the log and by `count`: the kind, plus the code for status."""
        return f"status:{self.status}" if self.kind == "status" else self.kind

    @classmethod
    def parse(cls, spec: str | Fault) -> Fault:
        if isinstance(spec, Fault):
            return spec
        head, _, rest = spec.strip().partition(":")
        key, eq, value = head.partition("=")
        try:
            if head in ("pass", "hang", "reset", "malformed") and not rest:
                return cls(kind=head)
            if eq and key == "drop_stream_after" and not rest and int(value) >= 0:
                return cls(kind="drop_stream", events=int(value))
            if eq and key == "delay" and not rest and float(value) >= 0:
                return cls(kind="delay", seconds=float(value))
            if head == "status" and rest:
                return cls._parse_status(rest)
        except ValueError:
            pass
        raise ValueError(f"not a fault spec: {spec!r} (see tests/fault_proxy.py for the grammar)")

    @classmethod
    def _parse_status(cls, rest: str) -> Fault:
        code, _, opts = rest.partition(":")
        fields: dict = {"kind": "status", "status": int(code)}
        while opts:
            if opts.startswith("message="):
                fields["message"] = opts.removeprefix("message=")
                break
            opt, _, opts = opts.partition(":")
            key, eq, value = opt.partition("=")
            if key == "retry_after" and eq:
                fields["retry_after"] = float(value)
            elif key == "type" and eq:
                fields["error_type"] = value
            elif opt == "body=none":
                fields["with_body"] = False
            else:
                raise ValueError(opt)
        HTTPStatus(fields["status"])  # a ValueError for codes no client would recognise
        return cls(**fields)


PASS = Fault(kind="pass")


@dataclass
class LogEntry:
    """One request as the proxy saw it; `upstream_status` is None when the upstream was not
    asked (an injected status, hang, reset, malformed) or did not answer. `time` is
    `time.monotonic()` when the request was read, so tests can measure backoff gaps. `error`
    is the repr of the upstream exception when the proxy answered 502 itself."""

    path: str
    fault: str
    upstream_status: int | None
    time: float
    error: str | None = None


class FaultProxy:
    """Reverse proxy to `upstream_url`; `url` is the same URL with the proxy's host and port."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url.rstrip("/"))
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path
        self._lock = threading.Lock()
        self._script: deque[Fault] = deque()
        self._default, self._rate, self._rng = PASS, 0.0, random.Random()
        self._log: list[LogEntry] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # ---- the plan and the record (called from test threads) ----

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._prefix}"

    def script(self, faults: Iterable[str | Fault]) -> None:
        """Replace the FIFO script: request i takes entry i; once empty, the default applies."""
        parsed = [Fault.parse(f) for f in faults]
        with self._lock:
            self._script = deque(parsed)

    def set_default(
        self, fault: str | Fault = "status:500", *, rate: float = 1.0, seed: int | None = None
    ) -> None:
        """Unscripted requests get `fault` with probability `rate` (drawn from a `seed`ed RNG,
        so a sequential run is reproducible), else pass. `set_default("pass")` turns it off."""
        parsed = Fault.parse(fault)
        with self._lock:
            self._default, self._rate, self._rng = parsed, rate, random.Random(seed)

    def clear(self) -> None:
        """Forget the script, the default and the log (for a proxy shared across tests)."""
        with self._lock:
            self._script.clear()
            self._default, self._rate, self._rng = PASS, 0.0, random.Random()
            self._log.clear()

    @property
    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def count(self, fault: str) -> int:
        """Requests logged under `fault`: an exact name ("status:429") or a kind ("status")."""
        with self._lock:
            return sum(e.fault == fault or e.fault.split(":")[0] == fault for e in self._log)

    def _next(self, path: str) -> tuple[Fault, LogEntry]:
        with self._lock:
            if self._script:
                fault = self._script.popleft()
            elif self._rate > 0 and self._rng.random() < self._rate:
                fault = self._default
            else:
                fault = PASS
            entry = LogEntry(path, fault.name, None, time.monotonic())
            self._log.append(entry)
        return fault, entry

    # ---- lifecycle ----

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.port:
            self.stop()
            raise RuntimeError("fault proxy failed to start") from self._error
        return self

    def stop(self) -> None:
        """Close the listener and every connection (hanging ones too); join the loop thread."""
        if self._loop is not None and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop already finished
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start(); a thread has no one else to tell
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            tasks.add(task)
            try:
                await self._connection(reader, writer, upstream)
            except (ConnectionError, ValueError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError):  # fmt: skip
                pass  # the client went away or sent garbage: nothing to answer
            except asyncio.CancelledError:
                pass  # stop(): end quietly (3.11 logs a cancelled connection task as an error)
            finally:
                tasks.discard(task)
                writer.close()

        # No timeouts or pool limits upstream: the client under test owns every deadline.
        # Idle upstream connections expire well before the upstream's own keep-alive timeout
        # (uvicorn, under llama_cpp.server: 5 s). httpx's default expiry is also 5 s, so the pool
        # could reuse a connection just as the upstream closed it; the request then died with a
        # ReadError and the proxy answered 502, a fault nobody injected. The first request after
        # a pause takes the oldest idle connection, the one nearest that timeout, which is how it
        # hit the load test's half-open probe.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=_UPSTREAM_IDLE)
        async with httpx.AsyncClient(timeout=None, limits=limits) as upstream:
            server = await asyncio.start_server(
                on_connect, "127.0.0.1", 0, backlog=1024, limit=1 << 20
            )
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    # ---- one connection: requests in turn while the client keeps it alive ----

    async def _connection(self, reader, writer, upstream: httpx.AsyncClient) -> None:
        # drain() then waits until asyncio's buffer is empty, so a reset loses nothing sent.
        writer.transport.set_write_buffer_limits(0)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # clean close between requests
            request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
            method, target, version = request_line.split(" ", 2)
            headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines]
            fields = {k.lower(): v for k, v in headers}
            body = await _read_body(reader, fields)
            keep_alive = fields.get("connection", "").lower() != "close" and version != "HTTP/1.0"
            fault, entry = self._next(target)

            if fault.kind == "hang":
                while await reader.read(65536):
                    pass
                return
            if fault.kind == "reset":
                _reset(writer)
                return
            if fault.kind == "status":
                await _respond(writer, fault.status, *_error_body(fault), fault.retry_after)
            elif fault.kind == "malformed":
                await _respond(writer, 200, "application/json", b'{"id": "chatcmpl-1", "choi')
            else:  # pass, delay, drop_stream: the upstream answers
                await asyncio.sleep(fault.seconds)
                request = upstream.build_request(
                    method, self._origin + target, content=body,
                    headers=[(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS],
                )  # fmt: skip
                if not await self._relay(writer, upstream, request, method, fault, entry):
                    return
            if not keep_alive:
                return

    async def _relay(self, writer, upstream, request, method, fault, entry) -> bool:
        """Forward one upstream response; False when the connection must not be reused."""
        try:
            response = await upstream.send(request, stream=True)
        except httpx.HTTPError as exc:
            entry.error = repr(exc)
            await _respond(writer, 502, "text/plain", f"upstream error: {exc!r}".encode())
            return True
        try:
            entry.upstream_status = response.status_code
            has_body = method != "HEAD" and response.status_code not in (204, 304)
            length = response.headers.get("content-length")
            chunked = has_body and length is None
            out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
            out += [f"{k}: {v}" for k, v in response.headers.multi_items()
                    if k.lower() not in _HOP_HEADERS]  # fmt: skip
            if chunked:
                out.append("Transfer-Encoding: chunked")
            elif length is not None:  # kept for HEAD too: it describes the GET body
                out.append(f"Content-Length: {length}")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            if not has_body:
                return True
            if fault.kind == "drop_stream" and fault.events == 0:
                _reset(writer)  # headers only: the stream breaks before its first event
                return False
            frame = _chunk if chunked else (lambda data: data)
            pending, sent_events = b"", 0
            async for data in response.aiter_raw():
                if fault.kind != "drop_stream":
                    writer.write(frame(data))
                    await writer.drain()
                    continue
                pending += data
                while (end := _EVENT_END.search(pending)) is not None:
                    event, pending = pending[: end.end()], pending[end.end() :]
                    writer.write(frame(event))
                    sent_events += any(line.startswith(b"data:") for line in event.splitlines())
                    if sent_events >= fault.events:
                        await writer.drain()
                        _reset(writer)
                        return False
                await writer.drain()
            writer.write(frame(pending) + (b"0\r\n\r\n" if chunked else b""))
            await writer.drain()
            return True
        finally:
            await response.aclose()


async def _read_body(reader: asyncio.StreamReader, fields: dict[str, str]) -> bytes:
    """The request body by Content-Length, or de-chunked (trailers dropped)."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass
        return b"".join(parts)
    return await reader.readexactly(int(fields.get("content-length", 0)))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def _error_body(fault: Fault) -> tuple[str, bytes]:
    if not fault.with_body:
        return "application/json", b""
    kind, message = _DEFAULT_ERRORS.get(fault.status, ("server_error", "Injected server error."))
    error = {"message": fault.message or message, "type": fault.error_type or kind}
    if fault.status == 400 and fault.message is None:
        error["code"] = "context_length_exceeded"
    return "application/json", json.dumps({"error": error}).encode()


async def _respond(writer, status: int, ctype: str, body: bytes, retry_after=None) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]  # fmt: skip
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after:g}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: SO_LINGER(on, 0) makes close() discard and reset."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
