"""Output helpers shared by the CLI's command groups."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

import ragline
from ragline.error_report import error_json
from ragline.models import Answer

try:  # typer 0.2x vendors click as a private package; older releases use click itself
    from typer._click.exceptions import ClickException  # noqa: F401 - cli.main catches it
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException, get_current_context  # noqa: F401

out = Console()
err = Console(stderr=True)



def emit_json(payload: dict[str, Any]) -> None:
    """`--json` output: one JSON object on stdout and nothing else."""
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def json_requested() -> bool:
    """Whether the running command was given `--json` (read from click's context, so every
    command and error path agrees without passing the flag around)."""
    context = get_current_context(silent=True)
    return bool(context and context.params.get("as_json"))


def fail(error: BaseException | str, *, kind: str | None = None, code: int = 1) -> NoReturn:
    """End the command: the message on stderr, and with `--json` the error object on stdout."""
    err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)  # one line, however long
    if json_requested():
        emit_json(error_json(error, kind))
    raise typer.Exit(code)


StoreOption = Annotated[
    Path | None, typer.Option("--store", help="Store directory (default: .ragline or ragline.toml's store.path).")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: ./ragline.toml if present).")
]
RecordOption = Annotated[
    Path | None, typer.Option("--record", dir_okay=False, help="Write every model call to this cassette (JSON Lines).")
]
ReplayOption = Annotated[
    Path | None,
    typer.Option("--replay", exists=True, dir_okay=False, help="Answer from this cassette, offline; a request not in it fails."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
AsOption = Annotated[
    str | None, typer.Option("--as", help="Whom the call is for (access control): user:NAME; required with [access] enabled.")
]
GroupOption = Annotated[
    list[str] | None, typer.Option("--group", help="A group that user is in, repeatable: group:NAME (or NAME).")
]


def principals(as_user: str | None, groups: list[str] | None) -> list[str] | None:
    """`--as` and `--group` as the principals a library call takes (None: no identity given);
    a bare NAME gets its option's prefix, anything else must be well-formed."""
    from ragline.access.principals import check_principal

    if as_user is None:
        if groups:
            raise typer.BadParameter("--group needs --as user:NAME (whose groups they are)", param_hint="--group")
        return None
    user = as_user if ":" in as_user else f"user:{as_user}"
    if not user.startswith("user:"):
        raise typer.BadParameter(f"{as_user!r}: --as names a user, user:NAME (groups go in --group)", param_hint="--as")
    found = [user, *(g if ":" in g else f"group:{g}" for g in groups or [])]
    for principal, hint in zip(found, ["--as", *["--group"] * len(groups or [])], strict=True):
        try:
            check_principal(principal, where=hint)
        except PermissionError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
    if any(not g.startswith("group:") for g in found[1:]):
        raise typer.BadParameter("--group takes group:NAME (or NAME)", param_hint="--group")
    return found


def settings(store: Path | None, config: Path | None):
    """The configuration a command would open the store with (`--store` over store.path)."""
    from ragline.config import ConfigError, load_config

    overrides = {"store": {"path": str(store)}} if store else {}
    try:
        return load_config(config, **overrides)
    except ConfigError as exc:
        fail(exc)


def store_dir(store: Path | None, config: Path | None) -> Path:
    """The store directory the other commands would open: `--store`, else the config's
    store.path (ragline.toml, RAGLINE_STORE__PATH), else the default."""
    return Path(settings(store, config).store.path)


@contextmanager
def opened(store: Path | None, config: Path | None, **overrides: Any):
    """Open the store, turning setup errors into a clear message and exit code 1."""
    from ragline.access.principals import AccessError

    try:
        rag = ragline.open(store, config_file=config, **overrides)
    except (ValueError, FileNotFoundError, RuntimeError, AccessError) as exc:
        fail(exc)
    try:
        yield rag
    except typer.Exit:
        raise
    except (ValueError, RuntimeError, AccessError) as exc:
        fail(exc)
    finally:
        rag.close()


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "answer": answer.text,
        "citations": [
            {"n": c.n, "document_id": c.document_id, "chunk_id": c.chunk_id, "text": c.text}
            for c in answer.citations
        ],
        "model": answer.model,
        "usage": {**answer.usage.model_dump(), "total_tokens": answer.usage.total_tokens},
        "cost_usd": answer.cost_usd,
        "trace_id": answer.trace_id,
        "provider": answer.provider,
        "cached": answer.cached,
        "attempts": [a.model_dump() for a in answer.attempts],
        "prompt_version": answer.prompt_version,
    }


def print_sources(answer: Answer) -> None:
    cited = {c.n for c in answer.citations}
    out.print()
    if not cited:
        out.print("[bold]Sources[/] (the answer cites none of them)")
    elif answer.citations_attributed:
        out.print("[bold]Citations[/] (the model wrote no \\[n] markers: matched by word overlap)")
    else:
        out.print("[bold]Citations[/]")
    for source in answer.sources:
        if cited and source.n not in cited:
            continue
        page = source.metadata.get("page_number")
        where = f"{source.document_id}" + (f", page {page}" if page else "")
        snippet = " ".join(source.text.split())[:160]
        out.print(f"  [{source.n}] [cyan]{escape(where)}[/]: {escape(snippet)}")
    usage = answer.usage
    via = f" via {answer.provider}" if answer.provider else ""
    cached = " · cached" if answer.cached else ""
    out.print(
        f"[dim]model {escape(answer.model)}{escape(via)}{cached} · {usage.prompt_tokens}+{usage.completion_tokens}"
        f" tokens · ${answer.cost_usd:.4f} · trace {answer.trace_id}[/]"
    )
    for attempt in answer.attempts:
        if attempt.outcome != "ok":
            out.print(f"[dim]  {attempt.outcome}: {escape(attempt.provider)} ({attempt.error_kind})[/]")


def replay_overrides(record: Path | None, replay: Path | None) -> dict[str, Any]:
    """Config overrides for `--record` / `--replay` (none when neither is given)."""
    if record and replay:
        raise typer.BadParameter("--record and --replay exclude each other")
    settings = {"record": str(record) if record else None, "replay": str(replay) if replay else None}
    return {"replay": settings} if record or replay else {}


def ends_without_teardown(command: Callable[..., None]) -> Callable[..., None]:
    """Once a command that loaded temporalio is done, end the `ragline` process without
    interpreter teardown: temporalio's Rust threads can abort a finalizing interpreter
    ("PyGILState_Release: thread state must be current", temporalio/sdk-python#300), turning
    a finished command's exit code into SIGABRT. The command has closed what it opened by
    then. Called in-process (tests, other programs), or without temporalio, it just returns."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> None:
        code = 0
        try:
            command(*args, **kwargs)
        except typer.Exit as exc:
            code = exc.exit_code
        if "temporalio" not in sys.modules or Path(sys.argv[0]).name not in ("ragline", "__main__.py"):
            if code:
                raise typer.Exit(code)
            return
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run
