"""Running a suite: ingest the dataset's corpus (incrementally), answer every item through
the suite's pipeline concurrently (bounded) with the async API under one run budget, score
each answer, and store the run with everything that shapes its answers.

A failed item (provider error, timeout, budget refusal) is stored with its error and scores
`error(kind)` on every metric: it lowers coverage, it is never skipped. Model calls go
through the store's model stack, so `--record` / `--replay` make a run reproducible.

An item with principals is answered as them (the store filters by readers, as for any
caller) and scored for `leakage_rate`; one without is answered unrestricted, which a store
with `[access] enabled` refuses before anything runs (the library's own error).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version as package_version

from ragline.access.principals import AccessError, principals_hash
from ragline.eval.answer_metrics import abstained
from ragline.eval.datasets import CorpusConnector, Dataset, EvalItem, load_dataset
from ragline.eval.item_metrics import failed_item, score_item
from ragline.eval.judge import JUDGE_METRIC, JUDGE_PROMPT, Judge
from ragline.eval.leakage import LEAKAGE_METRIC, Viewers, leakage_rate, with_leakage
from ragline.eval.model_metrics import MODEL_METRICS, ModelJudges
from ragline.eval.runs import ItemResult, MetricSummary, RunRecord, RunStore
from ragline.eval.scores import aggregate
from ragline.eval.stats import bootstrap_ci
from ragline.eval.suite import Suite

Progress = Callable[[int], None]
CITED_TEXT_CHARS = 600  # enough of each cited chunk to judge it in a report


def settings_of(rag, suite: Suite) -> dict:
    """Everything besides the prompts that decides an answer: the pipeline as it runs, the
    retrieval, embedding and model settings (names of key variables only, never keys)."""
    config = rag.config
    return {
        "pipeline": rag.get_pipeline(suite.pipeline.name).to_dict(),
        "retrieval": config.retrieval.model_dump(mode="json"),
        "embedding": config.embedding.model_dump(mode="json"),
        "llm": config.llm.model_dump(mode="json", exclude={"n_threads"}),
        "models": [m.model_dump(mode="json") for m in config.models],
        "query": config.query.model_dump(mode="json"),
        "metrics": suite.metrics.names,
    }


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def ingest_corpus(rag, dataset: Dataset, suite: Suite, *, show_progress: bool = False) -> None:
    """The dataset's own corpus into the store, incrementally (a second run embeds nothing)."""
    if dataset.corpus:
        rag.ingest(CorpusConnector(dataset, f"eval:{suite.name}:{dataset.format}"), show_progress=show_progress)
    elif dataset.corpus_file is not None:
        from ragline.connectors.dataset import DatasetConfig, DatasetConnector

        rag.ingest(DatasetConnector(DatasetConfig(path=dataset.corpus_file, id_field="_id")), show_progress=show_progress)


def _judges(rag, suite: Suite) -> ModelJudges | None:
    """The local models the suite's metrics read with, or None when none does."""
    if not set(suite.metrics.names) & set(MODEL_METRICS):
        return None
    return ModelJudges(embedder=rag.embedder, reranker=rag.components.cross_encoder)


def _judge(rag, suite: Suite) -> Judge | None:
    if JUDGE_METRIC not in suite.metrics.names:
        return None
    return Judge(llm=rag.components.llm.llm(cache=True), prompt=rag.prompt(JUDGE_PROMPT))


def metric_names(suite: Suite, dataset: Dataset) -> list[str]:
    """What a run scores: the suite's metrics, plus `leakage_rate` when any item has a principal."""
    return with_leakage(suite.metrics.names, (item.principals for item in dataset.items))


def _identity(item: EvalItem) -> dict:
    hashed = principals_hash(item.principals) if item.principals else None
    return {"principals": item.principals, "principals_hash": hashed}


async def _answer(
    rag, pipeline, item: EvalItem, names: list[str], labels, gate: asyncio.Semaphore, judges: ModelJudges | None,
    judge: Judge | None, viewers: Viewers,
) -> ItemResult:
    async with gate:
        started = time.perf_counter()
        try:
            viewer = viewers.of(item.principals)  # a resolver failure fails the item, as it would the query
            answer = await rag.arun_pipeline(pipeline, item.question, principals=item.principals or None)
        except Exception as exc:  # noqa: BLE001 - every failure is the item's outcome, with its kind
            kind = getattr(exc, "kind", None) or type(exc).__name__
            return ItemResult(
                item_id=item.id, question=item.question, reference=item.reference_answer, error=f"{kind}: {exc}"[:500],
                latency_ms=(time.perf_counter() - started) * 1000, scores=failed_item(names, kind), **_identity(item),
            )  # fmt: skip
        latency_ms = (time.perf_counter() - started) * 1000
        scores = await asyncio.to_thread(score_item, item, answer, names, labels, judges)
        leaked: list[str] = []
        if LEAKAGE_METRIC in names:
            scores[LEAKAGE_METRIC], leaked = leakage_rate(viewer, answer.sources, answer.citations)
        if judge is not None:
            scores[JUDGE_METRIC] = await judge.score(item.id, item.question, answer.text, item.reference_answer)
    return ItemResult(
        item_id=item.id, question=item.question, answer=answer.text, sources=[s.document_id for s in answer.sources],
        cited=[c.document_id for c in answer.citations], cited_texts=[c.text[:CITED_TEXT_CHARS] for c in answer.citations],
        reference=item.reference_answer, abstained=abstained(answer.text), latency_ms=latency_ms,
        cost_usd=answer.cost_usd, scores=scores, judge_reply=judge.raw.get(item.id) if judge else None,
        leaked_chunks=leaked, **_identity(item),
    )  # fmt: skip


def check_identities(rag, suite: Suite, dataset: Dataset) -> None:
    """Refuse, before anything runs, items without a principal on a store whose `[access]`
    requires one: the library's AccessError, naming the items."""
    anonymous = [item.id for item in dataset.items if not item.principals]
    if not anonymous:
        return
    try:
        rag.components.access.viewer(None)
    except AccessError as exc:
        shown = ", ".join(anonymous[:10]) + (f" and {len(anonymous) - 10} more" if len(anonymous) > 10 else "")
        raise AccessError(f"{exc} (suite {suite.name!r}: items without a principal: {shown})") from exc


async def _answer_all(rag, suite: Suite, dataset: Dataset, tick: Progress | None) -> list[ItemResult]:
    pipeline = rag.get_pipeline(suite.pipeline.name)
    gate = asyncio.Semaphore(suite.concurrency)
    judges, judge = _judges(rag, suite), _judge(rag, suite)
    names, viewers = metric_names(suite, dataset), Viewers(rag.components.access)

    async def one(item: EvalItem) -> ItemResult:
        result = await _answer(rag, pipeline, item, names, dataset.labels, gate, judges, judge, viewers)
        if tick:
            tick(1)
        return result

    return list(await asyncio.gather(*(one(item) for item in dataset.items)))


def run_suite(
    rag, suite: Suite, *, tick: Progress | None = None, store: RunStore | None = None, repeat_group: str | None = None
) -> tuple[RunRecord, list[ItemResult]]:
    """Run `suite` against `rag`'s store and save the run (in `store`, default the store's);
    `repeat_group` ties repeated runs together for flakiness."""
    dataset = load_dataset(suite.dataset.path, suite.dataset.format, limit=suite.dataset.limit, name=suite.name)
    check_identities(rag, suite, dataset)
    ingest_corpus(rag, dataset, suite)
    settings = settings_of(rag, suite)
    spent_before = rag.budget.run.spent
    items = asyncio.run(_answer_all(rag, suite, dataset, tick))
    metrics = {}
    for name in metric_names(suite, dataset):
        scores = [item.scores[name] for item in items]
        summary = aggregate(scores)
        values = [s.value for s in scores if s.ok]
        low, high = bootstrap_ci(values) if values else (None, None)
        metrics[name] = MetricSummary(mean=summary.mean, ci_low=low, ci_high=high, coverage=summary.coverage)
    run = RunRecord(
        run_id=uuid.uuid4().hex[:12], suite=suite.name, dataset_hash=dataset.content_hash,
        settings_hash=settings_hash(settings), prompt_versions=prompt_versions(rag, suite),
        models=[rag.components.llm.chain.identity], ragline_version=package_version("ragline"), items=len(items),
        answered=sum(item.error is None for item in items),
        metrics=metrics, cost_usd=round(rag.budget.run.spent - spent_before, 8), settings=settings,
        repeat_group=repeat_group,
    )  # fmt: skip
    owned = store is None
    store = store or RunStore(rag.path)
    try:
        store.save(run, items)
    finally:
        if owned:
            store.close()
    return run, items


def prompt_versions(rag, suite: Suite) -> dict[str, str]:
    """name -> name@hash of every prompt the suite's pipeline renders, as they are now."""
    names = {rag.config.prompts.synthesis.split("@")[0]}
    if JUDGE_METRIC in suite.metrics.names:
        names.add(JUDGE_PROMPT)
    for step in _walk(rag.get_pipeline(suite.pipeline.name).steps):
        prompt = getattr(step, "prompt", None)
        if step.kind == "rewrite":
            names.add((prompt or step.strategy).split("@")[0])
        elif step.kind == "synthesize" and prompt:
            names.add(prompt.split("@")[0])
    refs = {name: rag.config.prompts.synthesis if name == rag.config.prompts.synthesis.split("@")[0] else name
            for name in names}  # fmt: skip
    return {name: rag.prompt(ref).version for name, ref in sorted(refs.items())}


def _walk(steps):
    for step in steps:
        yield step
        yield from _walk(getattr(step, "then", []) + getattr(step, "otherwise", []))
        for branch in getattr(step, "branches", []):
            yield from _walk(branch)


def worst_case_cost(rag, suite: Suite) -> dict:
    """`eval run --dry-run`: what the run could cost at most, priced at the dearest model of
    the chain: every model step of the pipeline per item (and the judge), each prompt bounded
    by its template, the question and `query.top_k` full sources (4 bytes a character, one
    token a byte at most), each completion by its max_tokens. No model is called."""
    from ragline.llm.stack import model_configs, price_of
    from ragline.models import Usage
    from ragline.pipelines.steps import ModelStep

    dataset = load_dataset(suite.dataset.path, suite.dataset.format, limit=suite.dataset.limit, name=suite.name)
    prices = [price_of(spec) for spec in model_configs(rag.config)]
    steps = [step for step in _walk(rag.get_pipeline(suite.pipeline.name).steps) if isinstance(step, ModelStep)]
    config = rag.config
    context = len(rag.synthesis_prompt.source.encode()) + config.query.top_k * config.query.max_source_chars * 4
    total, calls = 0.0, 0
    for item in dataset.items:
        question = len(item.question.encode())
        for step in steps:
            usage = Usage(prompt_tokens=context + question, completion_tokens=step.max_tokens or config.llm.max_tokens)
            total += max(price.cost(usage) for price in prices)
            calls += 1
        if JUDGE_METRIC in suite.metrics.names and item.reference_answer:
            prompt = question + len(item.reference_answer.encode()) + 4 * config.llm.max_tokens + 2048
            total += max(price.cost(Usage(prompt_tokens=prompt, completion_tokens=96)) for price in prices)
            calls += 1
    return {"dry_run": True, "suite": suite.name, "items": len(dataset.items), "calls": calls,
            "worst_case_usd": round(total, 6), "budget_usd": suite.budget_usd}  # fmt: skip
