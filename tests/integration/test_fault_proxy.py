"""The fault proxy itself, against a tiny real upstream: every fault, keep-alive, 200 clients.

The reliability tests of issue #5 trust this proxy to fail exactly as scripted, so each fault
is checked on the wire here, with real sockets and httpx clients, and without any model.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fault_proxy import Fault, FaultProxy

STREAM_EVENTS = 10
RELEASE = threading.Event()  # the gated stream waits for it after its first event


class _Upstream(BaseHTTPRequestHandler):
    """JSON echo on any path, and an SSE stream of STREAM_EVENTS events on /v1/stream."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add 40 ms to every response

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._echo(b"")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "123")  # of the body a GET would have had
        self.end_headers()

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            self.send_error(411)  # the proxy must de-chunk request bodies
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/v1/stream") or self.path.startswith("/v1/gated"):
            self._stream(gated=self.path.startswith("/v1/gated"))
        else:
            self._echo(body)

    def _echo(self, body: bytes) -> None:
        payload = json.dumps({
            "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(),
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Upstream", "tiny")
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, gated: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(STREAM_EVENTS):
            self._chunk(f'data: {{"token": {i}}}\n\n'.encode())
            if gated and i == 0:
                RELEASE.wait(5)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # 200 clients connect at once in the load test

    def handle_error(self, request, client_address) -> None:
        """Dropped streams and resets hang up on us by design; other errors still print."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def _events(proxy: FaultProxy, client: httpx.Client) -> list[str]:
    """The data lines of a whole streamed POST to the upstream's SSE endpoint."""
    seen = []
    with client.stream("POST", proxy.url + "/stream", json={"stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                seen.append(line)
    return seen


def test_url_keeps_the_upstream_path_prefix(proxy: FaultProxy) -> None:
    assert proxy.url == f"http://127.0.0.1:{proxy.port}/v1"


def test_pass_forwards_method_path_query_headers_and_body(proxy, client) -> None:
    response = client.post(
        proxy.url + "/chat/completions?x=1&y=2", content=b'{"hi": 1}',
        headers={"X-Test": "abc", "Authorization": "Bearer k"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "tiny"
    echoed = response.json()
    assert (echoed["method"], echoed["path"]) == ("POST", "/v1/chat/completions?x=1&y=2")
    assert echoed["headers"]["x-test"] == "abc"
    assert echoed["headers"]["authorization"] == "Bearer k"
    assert echoed["body"] == '{"hi": 1}'
    [entry] = proxy.log
    assert (entry.path, entry.fault, entry.upstream_status) == (
        "/v1/chat/completions?x=1&y=2", "pass", 200,
    )  # fmt: skip


def test_chunked_request_body_and_head(proxy, client) -> None:
    chunks = iter([b'{"a": ', b"1}"])  # an iterator body goes out chunked
    assert client.post(proxy.url + "/echo", content=chunks).json()["body"] == '{"a": 1}'
    head = client.head(proxy.url + "/models")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "123", b"")
    assert client.get(proxy.url + "/models").status_code == 200  # the connection is still good


def test_unreachable_upstream_is_a_502(client) -> None:
    with FaultProxy(f"http://127.0.0.1:{_closed_port()}/v1") as proxy:
        response = client.get(proxy.url + "/models")
        assert response.status_code == 502
        assert proxy.log[0].upstream_status is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_keep_alive_connection_serves_many_requests(proxy, client) -> None:
    proxy.script(["pass", "status:500", "pass", "malformed", "pass"])
    statuses = [client.get(proxy.url + "/models").status_code for _ in range(6)]
    assert statuses == [200, 500, 200, 200, 200, 200]
    faults = ["pass", "status:500", "pass", "malformed", "pass", "pass"]
    assert [e.fault for e in proxy.log] == faults


def test_sse_flows_incrementally_not_buffered(proxy, client) -> None:
    RELEASE.clear()
    with client.stream("POST", proxy.url + "/gated", json={"stream": True}) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        assert first == 'data: {"token": 0}'  # arrived while the upstream still waits
        RELEASE.set()
        rest = [line for line in lines if line.startswith("data:")]
    assert len(rest) == STREAM_EVENTS  # 9 tokens and [DONE]


def test_status_429_with_retry_after_then_script_runs_out(proxy, client) -> None:
    proxy.script(["status:429:retry_after=2"])
    limited = client.get(proxy.url + "/models")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"
    assert client.get(proxy.url + "/models").status_code == 200
    assert proxy.count("status:429") == 1 and proxy.count("pass") == 1
    assert proxy.log[0].upstream_status is None


@pytest.mark.parametrize(
    ("spec", "status", "needle"),
    [
        ("status:500", 500, "Injected server error"),
        ("status:503:type=overloaded", 503, "overloaded"),
        ("status:401", 401, "API key"),
        ("status:400", 400, "maximum context length"),
        ("status:400:message=bad: very bad", 400, "bad: very bad"),
    ],
)
def test_status_faults_answer_openai_shaped_errors(proxy, client, spec, status, needle) -> None:
    proxy.script([spec])
    response = client.post(proxy.url + "/chat/completions", json={})
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"] or needle == error["type"]
    assert "retry-after" not in response.headers


def test_status_without_body(proxy, client) -> None:
    proxy.script(["status:503:body=none"])
    response = client.get(proxy.url + "/models")
    assert (response.status_code, response.content) == (503, b"")


def test_hang_times_out_the_client_and_blocks_no_one_else(proxy, client) -> None:
    proxy.script(["hang"])
    waited: list[float] = []

    def hang() -> None:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(proxy.url + "/models", timeout=1.0)
        waited.append(time.monotonic() - started)

    waiter = threading.Thread(target=hang)
    waiter.start()
    while not proxy.log:
        time.sleep(0.01)
    assert client.get(proxy.url + "/models").status_code == 200  # answered while one hangs
    waiter.join(5)
    assert len(waited) == 1 and 0.9 < waited[0] < 4  # it gave up with a ReadTimeout
    assert [e.fault for e in proxy.log] == ["hang", "pass"]


def test_reset_drops_the_connection_without_a_response(proxy, client) -> None:
    proxy.script(["reset"])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
        client.get(proxy.url + "/models")
    assert client.get(proxy.url + "/models").status_code == 200


def test_drop_stream_after_three_events(proxy, client) -> None:
    proxy.script(["drop_stream_after=3"])
    seen: list[str] = []
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with client.stream("POST", proxy.url + "/stream", json={"stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    seen.append(line)
    assert seen == [f'data: {{"token": {i}}}' for i in range(3)]
    assert proxy.log[0].upstream_status == 200
    assert len(_events(proxy, client)) == STREAM_EVENTS + 1  # the next stream is whole


def test_drop_stream_after_zero_breaks_before_the_first_event(proxy, client) -> None:
    proxy.script(["drop_stream_after=0"])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _events(proxy, client)


def test_malformed_is_200_json_that_does_not_parse(proxy, client) -> None:
    proxy.script(["malformed"])
    response = client.post(proxy.url + "/chat/completions", json={})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_delay_forwards_after_waiting(proxy, client) -> None:
    proxy.script(["delay=0.3"])
    started = time.monotonic()
    assert client.get(proxy.url + "/models").status_code == 200
    assert time.monotonic() - started >= 0.3
    assert proxy.log[0].fault == "delay" and proxy.log[0].upstream_status == 200


def test_seeded_random_default_is_reproducible(proxy, client) -> None:
    proxy.set_default("status:500", rate=0.3, seed=7)
    statuses = [client.get(proxy.url + "/models").status_code for _ in range(100)]
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.3 else 200 for _ in range(100)]
    assert statuses == expected
    assert 15 <= proxy.count("status:500") <= 45
    assert proxy.count("status") == statuses.count(500)


def test_200_concurrent_async_requests_all_pass(proxy) -> None:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=200)  # 200 connections open at once
        url = proxy.url + "/chat/completions"
        # A generous timeout: on a shared 2-core machine the burst takes seconds.
        async with httpx.AsyncClient(timeout=30, limits=limits) as aclient:
            requests = (aclient.post(url, json={"i": i}) for i in range(200))
            responses = await asyncio.gather(*requests)
            return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * 200
    assert proxy.count("pass") == 200


def test_stop_closes_hanging_connections_and_joins_the_thread(upstream) -> None:
    before = {t.ident for t in threading.enumerate()}
    proxy = FaultProxy(upstream).start()
    proxy.script(["hang"])
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.get(proxy.url + "/models", timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=hang)
    waiter.start()
    while not proxy.log:
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    waiter.join(5)
    assert not waiter.is_alive() and time.monotonic() - started < 3
    assert len(errors) == 1 and isinstance(errors[0], httpx.RemoteProtocolError | httpx.ReadError)
    assert {t.ident for t in threading.enumerate()} <= before


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("pass", Fault(kind="pass")),
        ("status:429:retry_after=1.5", Fault(kind="status", status=429, retry_after=1.5)),
        ("drop_stream_after=4", Fault(kind="drop_stream", events=4)),
        ("delay=0.25", Fault(kind="delay", seconds=0.25)),
    ],
)
def test_parse(spec: str, fault: Fault) -> None:
    assert Fault.parse(spec) == fault


@pytest.mark.parametrize(
    "spec", ["", "boom", "status", "status:abc", "status:999", "status:429:wait=1", "hang:1",
             "delay=x", "drop_stream_after=-1"],
)  # fmt: skip
def test_parse_rejects_garbage(spec: str) -> None:
    with pytest.raises(ValueError):
        Fault.parse(spec)
