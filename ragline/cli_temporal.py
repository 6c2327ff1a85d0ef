"""`ragline temporal worker` and `ragline temporal run` (a thin layer over `ragline.temporal`;
temporalio is imported only when one of them runs, so the CLI works without the extra)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from ragline.cli_output import (
    ConfigOption,
    JsonOption,
    StoreOption,
    emit_json,
    ends_without_teardown,
    err,
    fail,
    opened,
    out,
    settings,
)

temporal_app = typer.Typer(help="Durable scheduled runs on Temporal (needs the temporal extra).", no_args_is_help=True)

AddressOption = Annotated[str | None, typer.Option("--address", help="Temporal frontend HOST:PORT (default: \\[temporal] address).")]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", help="Temporal namespace (default: \\[temporal] namespace).")]


def _need_extra() -> None:
    try:
        import temporalio  # noqa: F401
    except ImportError:
        fail("the temporal commands need the extra: pip install 'ragline[temporal]'", kind="missing_extra")


@temporal_app.command()
@ends_without_teardown
def worker(address: AddressOption = None, namespace: NamespaceOption = None, store: StoreOption = None,
           config: ConfigOption = None) -> None:  # fmt: skip
    """Own the store, register its sources' schedules in Temporal, run their ingestion workflows.

    SIGTERM stops running ingests after their current batch; Temporal resumes them on the next worker.
    """
    _need_extra()
    from ragline.errors import TemporalUnreachable
    from ragline.server.client import RemoteRag
    from ragline.temporal.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with opened(store, config) as rag:
        if isinstance(rag, RemoteRag):
            fail(f"{rag.path} is served at {rag.url}: the worker writes the store, so it must own it; stop that "
                 "server or give the worker a store of its own", kind="store_busy")  # fmt: skip

        def ready(queue: str, schedules: list[str]) -> None:
            err.print(f"ragline temporal worker: {rag.path} on task queue {queue}, {len(schedules)} schedules",
                      soft_wrap=True)  # fmt: skip

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await run_worker(rag, stop, address=address, namespace=namespace, on_ready=ready)

        try:
            asyncio.run(serve())
        except TemporalUnreachable as exc:
            fail(exc, kind="temporal_unreachable")


@temporal_app.command("run")
@ends_without_teardown
def run(
    source: Annotated[str, typer.Argument(help="A configured \\[\\[sources]] name.")],
    address: AddressOption = None,
    namespace: NamespaceOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a configured source through the store's Temporal worker now, and wait for it."""
    _need_extra()
    from temporalio.client import WorkflowFailureError

    from ragline.errors import TemporalUnreachable
    from ragline.temporal.client import connect, run_now

    resolved = settings(store, config)

    async def start() -> dict:
        client = await connect(address or resolved.temporal.address, namespace or resolved.temporal.namespace)
        return await run_now(client, resolved, source)

    try:
        outcome = asyncio.run(start())
    except TemporalUnreachable as exc:
        fail(exc, kind="temporal_unreachable")
    except WorkflowFailureError as exc:
        cause = exc.cause
        while getattr(cause, "cause", None) is not None:  # activity error -> application error
            cause = cause.cause
        fail(f"the run of {source!r} failed: {cause or exc}", kind="run_failed")
    if as_json:
        emit_json(outcome)
        return
    run_record = outcome["run"]
    counts = ", ".join(f"{run_record[key]} {key}" for key in ("added", "updated", "unchanged", "deleted", "failed"))
    out.print(f"{run_record['source']}: {run_record['status']} ({counts})")
