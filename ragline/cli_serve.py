"""`ragline serve`: own a store and serve it over HTTP (a thin layer over `ragline.server`)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from ragline.cli_output import ConfigOption, StoreOption, ends_without_teardown, err, fail, opened
from ragline.server.security import TOKEN_ENV


@ends_without_teardown  # a hosted Temporal worker ([temporal] enabled) loads temporalio
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; other than loopback needs RAGLINE_SERVER_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8765,
    schedules: Annotated[bool, typer.Option("--schedules/--no-schedules", help="Run the configured sources' schedules and watches.")] = True,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Own the store: serve queries, ingests and run history over HTTP, run the schedules.

    Other processes opening this store (`ragline.open`, every CLI command) are routed here.
    SIGTERM finishes the current batch of a running ingest, marks the run interrupted, exits 0.
    """
    from ragline.access.principals import AccessError
    from ragline.config import ConfigError
    from ragline.errors import TemporalUnreachable
    from ragline.server.client import RemoteRag
    from ragline.server.serve import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get(TOKEN_ENV) or None
    with opened(store, config) as rag:
        if isinstance(rag, RemoteRag):
            fail(f"{rag.path} is already served at {rag.url}", kind="store_busy")
        try:
            run_server(rag, host=host, port=port, token=token, schedules=schedules,
                       on_ready=lambda url: err.print(f"ragline serve: {rag.path} at {url}", soft_wrap=True))  # fmt: skip
        except AccessError as exc:  # the access self-test: before OSError, which it is a kind of
            fail(exc)
        except TemporalUnreachable as exc:  # [temporal] enabled
            fail(exc, kind="temporal_unreachable")
        except ConfigError as exc:  # [temporal] enabled without the extra
            fail(exc)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror or exc})", kind="bind")
