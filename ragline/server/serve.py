"""Run the owner process: take the store (its ownership lock), load the models once, publish
the address in the lock file so other processes route to it, serve the API on uvicorn, and
shut down in order on SIGTERM or SIGINT (uvicorn stops accepting and drains requests; then
the service stops runs after their current batch and closes the store). Exit status 0."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn

from ragline.server.api import create_app
from ragline.server.security import check_bind
from ragline.server.service import StoreService

log = logging.getLogger(__name__)
DRAIN_SECONDS = 10


class _OwnerServer(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM once it has drained, which would kill the process
    before the service stops its runs and closes the store; here the signal only asks to exit."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
        self._on_exit()  # no new scheduled run while requests drain


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP; without it
    # every response waits out the client's delayed ACK (44 ms a request, measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue from here on, before uvicorn starts accepting
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(rag, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          schedules: bool = True, on_ready: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Serve `rag`'s store until SIGTERM/SIGINT; `on_ready` gets the URL once it listens."""
    check_bind(host, token)
    store = rag.store  # takes the ownership lock now: a second server fails before binding
    if rag.config.access.enabled:
        rag.components.retriever  # noqa: B018 - runs the access self-test: never serve a store that ignores filters
    sock = bind(host, port)
    address = url_of(sock)
    ownership = getattr(store, "ownership", None)
    if ownership is not None:
        ownership.advertise(address)
    service = StoreService(rag, token=token, schedules=schedules)
    app = create_app(service)
    server = _OwnerServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=DRAIN_SECONDS,
                                         access_log=False, lifespan="off"), on_exit=service.stop_firing)  # fmt: skip
    previous = _ask_to_exit_on_signals(server)
    try:
        service.start()
        if on_ready is not None:
            on_ready(address)
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("shutting down: stopping runs after their current batch")
        service.close()
        sock.close()


def _ask_to_exit_on_signals(server: uvicorn.Server) -> dict:
    """uvicorn handles SIGTERM/SIGINT only once `run` has loaded the app: until then (after the
    ready line, while schedules may already run) a signal would kill the process by its default
    action (exit -15, runs not stopped). From here on it only asks the server to exit, which
    uvicorn honours by shutting down right after its startup. Returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return {}
    return {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
