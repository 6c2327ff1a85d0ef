"""The `ragline` command: a thin layer over the library.

Human output goes through rich; `--json` prints exactly one JSON object on stdout and
nothing else (progress and diagnostics go to stderr).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli_eval import eval_app
from ragline.cli_output import (
    AsOption,
    ClickException,
    ConfigOption,
    GroupOption,
    JsonOption,
    RecordOption,
    ReplayOption,
    StoreOption,
    answer_json,
    err,
    error_json,
    fail,
    out,
    principals,
    print_sources,
    replay_overrides,
)
from ragline.cli_output import emit_json as _emit_json
from ragline.cli_output import opened as _opened
from ragline.cli_pipelines import pipeline_app
from ragline.cli_prompts import prompts_app
from ragline.cli_runs import ingest_recorded, runs, schedule_app
from ragline.cli_serve import serve
from ragline.cli_temporal import temporal_app
from ragline.cli_traces import traces_app
from ragline.models import Answer

# unstructured logs a warning per undetectable language snippet; failures reach the report anyway.
logging.getLogger("unstructured").setLevel(logging.ERROR)

EXIT_PARTIAL_FAILURE = 3  # some documents failed; distinct from usage (2) and fatal (1) errors

app = typer.Typer(
    name="ragline",
    help="Ingest your documents into a Qdrant index and answer questions with citations.",
    no_args_is_help=True,
    add_completion=False,
)

FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Payload filter, repeatable: key=value, key=a,b (any of), key>=x / key<y (range; ISO dates work), key=* (exists).",
    ),
]
# The key runs up to the first operator character; the operator is the longest one there.
_FILTER = re.compile(r"^(?P<key>[^<>=]*)(?P<op>>=|<=|>|<|=)(?P<value>.*)$", re.DOTALL)
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}
_FILTER_FORMS = "key=value, key=a,b (any of), key>=value (or >, <=, <), key=*"
MAX_TOP_K = 1000  # more hits than anyone reads; bigger values only overflow the store's integers


def _scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _bad_filter(spec: str, problem: str) -> typer.BadParameter:
    return typer.BadParameter(f"{spec!r}: {problem}; accepted forms: {_FILTER_FORMS}", param_hint="--filter")


def parse_filters(specs: list[str] | None) -> dict[str, Any] | None:
    """`--filter` strings to the store's filter dict; conditions on one key combine. A filter
    with no key, no value or a doubled operator is a usage error, not a query for key ''."""
    filters: dict[str, Any] = {}
    for spec in specs or []:
        match = _FILTER.match(spec)
        if match is None:
            raise _bad_filter(spec, "no operator")
        key, op, value = match["key"].strip(), match["op"], match["value"].strip()
        if not key:
            raise _bad_filter(spec, f"no key before {op!r}")
        if not value:
            raise _bad_filter(spec, f"no value after {op!r}")
        if value[0] in "<>=":
            raise _bad_filter(spec, f"the value starts with {value[0]!r}: a doubled or misplaced operator")
        if op in _RANGE_OPS:
            bounds = filters.setdefault(key, {})
            if not isinstance(bounds, dict):
                raise _bad_filter(spec, f"{key} already has an exact condition")
            bounds[_RANGE_OPS[op]] = _scalar(value)
        elif value == "*":
            filters[key] = {"exists": True}
        elif "," in value:
            if not (values := [_scalar(v.strip()) for v in value.split(",") if v.strip()]):
                raise _bad_filter(spec, "no value between the commas")
            filters[key] = values
        else:
            filters[key] = _scalar(value)
    return filters or None


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders to ingest (default: ragline.toml's [[sources]]).")
    ] = None,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="Delete even when more than the guard's share of a source is gone.")
    ] = False,
    readers: Annotated[
        list[str] | None, typer.Option("--readers", help="Who may read the given paths' documents (repeatable), "
                                       "e.g. group:hr or public; default: their source's owners only.")
    ] = None,
    engine: Annotated[
        Engine | None, typer.Option("--engine", help="Where parsing and embedding run (default: ingest.engine): here, "
                                    "or on a Ray cluster (the ray extra).")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="With --engine ray: the cluster's head HOST:PORT (default: "
                                 "ray.address; unset: a local cluster for this run).")
    ] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest files and folders; unchanged documents are skipped, removed ones are deleted."""
    if readers and not paths:
        raise typer.BadParameter("--readers is for PATHS; configured [[sources]] set `readers` in ragline.toml",
                                 param_hint="--readers")  # fmt: skip
    if address and engine is not Engine.ray:
        raise typer.BadParameter("--address is the Ray cluster's: use it with --engine ray", param_hint="--address")
    overrides: dict = {"ingest": {"engine": engine.value}} if engine else {}
    if address:
        overrides["ray"] = {"address": address}
    with _opened(store, config, **overrides) as rag:
        progress, allow = not as_json and err.is_terminal, allow_mass_delete or None
        report = ingest_recorded(rag, paths or None, show_progress=progress, allow_mass_delete=allow, readers=readers)
    if as_json:
        _emit_json(report.model_dump(mode="json"))
    else:
        table = Table("added", "updated", "unchanged", "deleted", "failed", "chunks embedded")
        table.add_row(*(str(v) for v in (report.added, report.updated, report.unchanged,
                                          report.deleted, report.failed, report.chunks_embedded)))
        out.print(table)
        for error in report.errors:
            err.print(f"[red]failed[/] {escape(error.document)}: {escape(error.error)}")
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)


@app.command()
def sources(store: StoreOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List ingested sources with document and chunk counts and their last run."""
    with _opened(store, config) as rag:
        summaries = rag.sources()
    if as_json:
        _emit_json({"sources": [s.model_dump(mode="json") for s in summaries]})
        return
    if not summaries:
        out.print("No sources yet. Run `ragline ingest PATH` first.")
        return
    table = Table("source", "documents", "chunks", "last run", "added", "updated", "deleted", "failed")
    for summary in summaries:
        last = summary.last_report or {}
        when = (
            datetime.fromtimestamp(summary.last_run_finished).isoformat(sep=" ", timespec="seconds")
            if summary.last_run_finished else "-"
        )
        table.add_row(escape(summary.source), str(summary.documents), str(summary.chunks), when,
                      *(str(last.get(k, "-")) for k in ("added", "updated", "deleted", "failed")))
    out.print(table)
    for summary in summaries:
        for error in (summary.last_report or {}).get("errors", []):
            err.print(f"[red]{escape(summary.source)}[/] {escape(error['document'])}: {escape(error['error'])}")


@app.command()
def check(
    repair: Annotated[
        bool, typer.Option("--repair", help="Adopt or delete points the ledger does not own; mark damaged documents.")
    ] = False,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the index with the ledger point by point; exit 3 when they disagree (unless repaired)."""
    with _opened(store, config) as rag:
        results = rag.check(repair=repair)
    consistent = all(result.consistent for result in results)
    if as_json:
        _emit_json({"consistent": consistent, "repaired": repair and not consistent,
                    "sources": [result.as_dict() for result in results]})
    else:
        table = Table("source", "points expected", "points found", "damaged documents", "orphan documents", "stray points")
        for r in results:
            table.add_row(escape(r.source), str(r.expected_points), str(r.found_points), str(len(r.damaged)),
                          str(len(r.adopted)), str(len(r.stray)))
        out.print(table)
        if not consistent:
            damaged = sum(len(r.damaged) + len(r.adopted) for r in results)
            advice = "repaired; run `ragline ingest` to re-process" if repair else "run `ragline check --repair`, then `ragline ingest` to re-process"
            err.print(f"index and ledger disagree: {advice} {damaged} documents")
    if not consistent and not repair:
        raise typer.Exit(EXIT_PARTIAL_FAILURE)


@app.command()
def optimize(store: StoreOption = None, config: ConfigOption = None) -> None:
    """Build HNSW indexes in the embedded store (ingest does this too when it wrote anything)."""
    with _opened(store, config) as rag:
        rag.optimize()
        count = rag.store.count()
    out.print(f"optimized {count} points")


@app.command()
def retrieve(
    question: Annotated[str, typer.Argument(help="What to search for.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=MAX_TOP_K, help="How many chunks to return.")] = 10,
    mode: Annotated[
        str | None, typer.Option("--mode", help="dense, sparse or hybrid (default: retrieval.mode).")
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option("--rerank/--no-rerank", help="Cross-encoder reranking (default: configured).")
    ] = None,
    mmr: Annotated[
        bool | None, typer.Option("--mmr/--no-mmr", help="Diversify the hits with MMR (default: retrieval.mmr).")
    ] = None,
    filter_specs: FilterOption = None,
    as_user: AsOption = None,
    groups: GroupOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the chunks most relevant to a question (no LLM call)."""
    if mode not in (None, "dense", "sparse", "hybrid"):
        raise typer.BadParameter(f"{mode!r} is not one of dense, sparse, hybrid", param_hint="--mode")
    filters, caller = parse_filters(filter_specs), principals(as_user, groups)
    with _opened(store, config) as rag:
        hits = rag.retrieve(question, top_k=top_k, filters=filters, mode=mode, rerank=rerank, mmr=mmr, principals=caller)
    if as_json:
        _emit_json({"hits": [h.model_dump(mode="json") for h in hits]})
        return
    if not hits:
        out.print("No hits: the store is empty or nothing matches. Run `ragline ingest PATH` first.")
        return
    table = Table("#", "score", "document", "text", show_lines=True)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.3f}", escape(hit.document_id), escape(hit.text[:300]))
    out.print(table)


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="The question to answer from your documents.")],
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=MAX_TOP_K, help="Sources given to the LLM.")] = None,
    filter_specs: FilterOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ask the model even if this exact request was answered before.")] = False,
    record: RecordOption = None,
    replay: ReplayOption = None,
    as_user: AsOption = None,
    groups: GroupOption = None,
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a question from the ingested documents, with numbered citations."""
    filters, caller = parse_filters(filter_specs), principals(as_user, groups)
    with _opened(store, config, **replay_overrides(record, replay)) as rag:
        if as_json:
            answer = rag.query(question, top_k=top_k, filters=filters, cache=not no_cache, principals=caller)
        else:
            answer = None
            for event in rag.query_stream(question, top_k=top_k, filters=filters, cache=not no_cache, principals=caller):
                if isinstance(event, Answer):
                    answer = event
                else:
                    out.print(escape(event.delta), end="", soft_wrap=True)
            out.print()
    if as_json:
        _emit_json(answer_json(answer))
        return
    print_sources(answer)


app.add_typer(eval_app, name="eval")
app.add_typer(prompts_app, name="prompts")
app.add_typer(traces_app, name="traces")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(schedule_app, name="schedule")
app.add_typer(temporal_app, name="temporal")
app.command("runs")(runs)
app.command("serve")(serve)


@eval_app.command("retrieval")
def eval_retrieval(
    corpus: Annotated[Path, typer.Option("--corpus", exists=True, dir_okay=False, help="BEIR corpus.jsonl.")],
    queries: Annotated[Path, typer.Option("--queries", exists=True, dir_okay=False, help="BEIR queries.jsonl.")],
    qrels: Annotated[Path, typer.Option("--qrels", exists=True, dir_okay=False, help="BEIR qrels TSV.")],
    mode: Annotated[str | None, typer.Option("--mode", help="dense, sparse or hybrid (default: retrieval.mode).")] = None,
    rerank: Annotated[bool, typer.Option("--rerank", help="Rerank the first stage with the cross-encoder.")] = False,
    rerank_top_n: Annotated[int | None, typer.Option("--rerank-top-n", min=1, max=MAX_TOP_K, help="Hits the reranker reads.")] = None,
    store: Annotated[Path, typer.Option("--store", help="Store for the corpus (reused while unchanged).")] = Path(
        ".ragline-eval"
    ),
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score retrieval on a BEIR-style dataset: nDCG@10, recall@10, recall@100, MRR@10."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ragline.connectors.dataset import DatasetConfig, DatasetConnector
    from ragline.eval.retrieval import evaluate, load_qrels, load_queries

    if mode not in (None, "dense", "sparse", "hybrid"):
        raise typer.BadParameter(f"{mode!r} is not one of dense, sparse, hybrid", param_hint="--mode")
    try:
        query_texts, judgments = load_queries(queries), load_qrels(qrels)
    except ValueError as exc:
        fail(exc, kind="input")
    settings = {"rerank_top_n": rerank_top_n} if rerank_top_n else {}
    with _opened(store, config, retrieval=settings) as rag:
        mode = mode or rag.config.retrieval.mode
        report = rag.ingest(DatasetConnector(DatasetConfig(path=corpus, id_field="_id")), show_progress=not as_json)
        if report.failed:
            err.print(f"[yellow]warning:[/] {report.failed} corpus records failed to ingest")

        def search(text: str, k: int) -> list[str]:
            return [hit.document_id for hit in rag.retrieve(text, top_k=k, mode=mode, rerank=rerank)]

        with Progress(TextColumn("[bold]eval[/] queries"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("queries", total=sum(1 for q in query_texts if q in judgments))
            result = evaluate(search, query_texts, judgments, mode=mode, rerank=rerank,
                              tick=lambda: progress.advance(task))
    if as_json:
        _emit_json(result.as_json())
        return
    table = Table("mode", "rerank", "queries", "nDCG@10", "recall@10", "recall@100", "MRR@10")
    table.add_row(result.mode, "yes" if result.rerank else "no", str(result.queries),
                  *(f"{v:.4f}" for v in (result.ndcg_at_10, result.recall_at_10, result.recall_at_100, result.mrr_at_10)))
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """The `ragline` command. With `--json`, every failure is one JSON object on stdout too
    (`{"error": {"kind", "message", ...}}`): usage errors (exit 2) and unexpected ones (exit 1,
    the traceback on stderr) here, the rest where commands catch them (`cli_output.fail`)."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        code = app(args=args, prog_name="ragline", standalone_mode=False)
    except ClickException as exc:
        exc.show()
        if as_json:
            _emit_json(error_json(exc.format_message(), "usage"))
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except Exception as exc:  # a bug of ours: the traceback is for a report, the JSON for the caller
        traceback.print_exc()
        if as_json:
            _emit_json(error_json(f"{type(exc).__name__}: {exc}", "internal"))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
