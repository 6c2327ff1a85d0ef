"""Run the owner process: take the store (its ownership lock), load the models once, publish
the address in the lock file so other processes route to it, serve the API on uvicorn, and
shut down in order on SIGTERM or SIGINT (uvicorn stops accepting and drains requests; then
the service stops runs after their current batch and closes the store). Exit status 0."""

from __future__ import annotations

import logging
import socket
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

    def handle_exit(self, sig: int, frame) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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
    rag.embedder, rag.reranker  # noqa: B018 - load the models before the first query, not during it
    sock = bind(host, port)
    address = url_of(sock)
    ownership = getattr(store, "ownership", None)
    if ownership is not None:
        ownership.advertise(address)
    service = StoreService(rag, token=token, schedules=schedules)
    app = create_app(service)
    server = _OwnerServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=DRAIN_SECONDS,
                                           access_log=False, lifespan="off"))  # fmt: skip
    service.start()
    try:
        if on_ready is not None:
            on_ready(address)
        server.run(sockets=[sock])
    finally:
        log.info("shutting down: stopping runs after their current batch")
        service.close()
        sock.close()
