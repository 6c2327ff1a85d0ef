"""`Rag`: the library's front door, a thin facade over one store's components.

What each call does lives elsewhere: the parts are built in `ragline.components`,
retrieval stages in `ragline.retrieval.retriever`, and every query (plain, streamed, async,
or a named pipeline) runs through `ragline.pipelines.runner`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel

from ragline.access.principals import Viewer
from ragline.components import Components
from ragline.config import RaglineConfig, load_config
from ragline.connectors.base import Connector
from ragline.connectors.registry import ingest_connectors
from ragline.ingest import reconcile
from ragline.llm.base import LLMProvider, StreamChunk
from ragline.llm.chain import deadline
from ragline.models import Answer, Hit, IngestError, IngestReport
from ragline.pipelines.answer_cache import answer_key
from ragline.pipelines.config import check_question
from ragline.pipelines.context import StepContext
from ragline.pipelines.pipeline import Pipeline, default_pipeline, find_pipeline
from ragline.pipelines.prompts import Prompt, find_prompt
from ragline.pipelines.runner import PipelineRunner, QueryScope, final_answer, trace_id
from ragline.pipelines.steps import QueryState
from ragline.retrieval.embeddings import TextEmbedder
from ragline.retrieval.ownership import read_owner
from ragline.retrieval.store import Filters, SearchMode
from ragline.text import valid_unicode
from ragline.tracing.spans import record_chunks, record_hits


def open(  # noqa: A001 - the public entry point is `ragline.open`
    path: str | Path | None = None,
    *,
    config: RaglineConfig | None = None,
    config_file: str | Path | None = None,
    embedder: TextEmbedder | None = None,
    provider: LLMProvider | None = None,
    **overrides: Any,
) -> Rag:
    """Open (or create) a ragline store. `path` is the store directory (default `.ragline`).

    `embedder` / `provider` replace the configured embedder and LLM (e.g. to share loaded
    models); `overrides` are config sections as dicts, e.g. `llm={"max_tokens": 64}`.
    While a `ragline serve` owns the store, this returns a `RemoteRag` routed to it (same
    methods, same results; the server's models and config answer).
    """
    if config is None:
        if path is not None:
            overrides["store"] = {**overrides.get("store", {}), "path": str(path)}
        config = load_config(config_file, **overrides)
    elif path is not None:
        config = config.model_copy(update={"store": config.store.model_copy(update={"path": str(path)})})
    served_at = _served_at(config)
    if served_at is not None:
        from ragline.server.client import RemoteRag

        return RemoteRag(served_at, config=config, path=Path(config.store.path))
    return Rag(config, embedder=embedder, provider=provider)


def _served_at(config: RaglineConfig) -> str | None:
    """The address of the live server owning this embedded store, if one does."""
    if config.store.kind != "edge":
        return None
    owner = read_owner(config.store.path)
    if owner is None or owner.address is None or owner.pid == os.getpid():
        return None
    return owner.address


class Rag:
    def __init__(
        self, config: RaglineConfig, *, embedder: TextEmbedder | None = None, provider: LLMProvider | None = None
    ):
        self.config = config
        self.path = Path(config.store.path)
        self.components = Components(config, embedder=embedder, provider=provider)
        self._ingesting = threading.Lock()

    # --- the parts callers may reach (built on first use) ---

    @property
    def store(self):
        return self.components.store

    @property
    def embedder(self) -> TextEmbedder:
        return self.components.embedder

    @property
    def reranker(self):
        return self.components.reranker

    @property
    def ledger(self):
        return self.components.ledger

    @property
    def budget(self):
        """Cost ceilings: per query, for this Rag's lifetime (the run), per day (persisted)."""
        return self.components.llm.budget

    # --- ingest ---

    def ingest(
        self,
        sources: str | Path | Connector | Iterable[str | Path | Connector] | None = None,
        *,
        show_progress: bool = False,
        allow_mass_delete: bool | None = None,
        stop: threading.Event | None = None,
        optimize: bool = True,
        readers: list[str] | None = None,
    ) -> IngestReport:
        """Ingest files, folders or connectors (default: the configured `[[sources]]`).

        `readers` are the principals that may read the given documents where the connector
        knows no ACL of its own (as `[[sources]] readers`); without any, a document is
        readable only by its source's owners (access control: `[access]`).

        Re-running only processes what changed, and removes what disappeared (within the
        mass-delete guard). Setting `stop` ends the run at the next write batch, with
        `interrupted` set and nothing deleted (the next run continues). `optimize=False`
        leaves building indexes to the caller (a server does it while idle: it freezes
        queries). Ingests of one store run one at a time: a run's crash recovery must not
        see another run's uncommitted writes."""
        total = IngestReport()
        with self._ingesting:
            for source in ingest_connectors(sources, self.config.sources, readers):
                if isinstance(source, IngestError):
                    total.failed += 1
                    total.errors.append(source)
                    continue
                total.merge(
                    self.components.ingestor.run(
                        source, show_progress=show_progress, allow_mass_delete=allow_mass_delete, stop=stop
                    )
                )
                if total.interrupted:
                    break
            if optimize and total.chunks_embedded and not total.interrupted:  # no long optimize while stopping
                self.optimize()
        return total

    def optimize(self) -> None:
        """Build search indexes where the engine needs an explicit call (the embedded store
        switches from exact search to HNSW for segments above `store.hnsw_threshold`)."""
        self.store.optimize()

    def sources(self):
        """Every ingested source with its document/chunk counts and last run (`SourceSummary`)."""
        return self.ledger.sources()

    def check(self, *, repair: bool = False):
        """Compare the index with the ledger, point id by point id, per source
        (`Reconciliation`s); `repair` fixes what it can and leaves damaged documents for the
        next `ingest` to re-process (every ingest also reconciles its source by point counts)."""
        return reconcile.check(self.store, self.ledger, repair_found=repair)

    # --- retrieval ---

    def retrieve(
        self,
        question: str,
        top_k: int = 10,
        filters: Filters | None = None,
        *,
        mode: SearchMode | None = None,
        rerank: bool | None = None,
        mmr: bool | None = None,
        principals: list[str] | None = None,
    ) -> list[Hit]:
        """The `top_k` chunks best matching `question` that `principals` may read.

        First stage: `mode` (default `retrieval.mode`: hybrid dense + BM25, fused by RRF in
        Qdrant); then, unless `rerank=False` or no reranker is configured, the second stage
        (by default the stored second-stage vectors, `retrieval.rerank`) re-scores the best
        `retrieval.rerank_depth` candidates; then, with `mmr` (default
        `retrieval.mmr`), those candidates are re-ordered by maximal marginal relevance.

        `principals` (e.g. `["user:hana"]`, groups added by the `[access]` resolver) restrict
        every search to chunks they may read; required when `[access] enabled = true`.
        """
        check_question(question, self.config.query.max_question_chars)
        viewer = self.components.access.viewer(principals)
        with self.components.tracing.span("retrieve", {"ragline.retrieval.top_k": top_k, **_viewer_attributes(viewer)}) as span:
            hits = self.components.retriever.retrieve(
                question, top_k, filters, readers=viewer.readable, mode=mode, rerank=rerank, mmr=mmr
            )
            record_hits(span, hits)
        return hits

    # --- queries: every one runs a pipeline through the runner ---

    def prompt(self, ref: str) -> Prompt:
        """A prompt by `name`, `name@label` or `name@hash`: the `[prompts]` folder first, then
        ragline's built-in prompts for a bare name the folder does not have."""
        return find_prompt(ref, Path(self.config.prompts.dir))

    @property
    def synthesis_prompt(self) -> Prompt:
        return self.prompt(self.config.prompts.synthesis)

    def get_pipeline(self, pipeline: Pipeline | str) -> Pipeline:
        """A pipeline object as is, or by name from `[pipelines] dir`; "default" is what
        `query` runs, built from the config."""
        if isinstance(pipeline, Pipeline):
            return pipeline
        if pipeline == "default":
            return default_pipeline(self.components.retrieval, self.config.query)
        return find_pipeline(pipeline, Path(self.config.pipelines.dir))

    def query(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True,
        principals: list[str] | None = None,
    ) -> Answer:
        """Answer from the retrieved chunks, citing them as numbered sources (the default
        pipeline). `cache=False` skips the answer and response caches (neither read nor written).
        `principals`: whose query it is (see `retrieve`); cached answers are kept per
        effective principal set."""
        return self._run(self._default(top_k, filters), question, root="query", cache=cache, principals=principals,
                         remember=True)  # fmt: skip

    def query_stream(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True,
        principals: list[str] | None = None,
    ) -> Iterator[StreamChunk | Answer]:
        """Stream the answer: text deltas as `StreamChunk`s, then the final `Answer`.

        A provider failing before the first token falls back along the chain; after it, the
        stream raises `StreamInterrupted` with the partial text."""
        pipeline = self._default(top_k, filters)
        viewer = self.components.access.viewer(principals)
        key = self._answer_key(pipeline, question, viewer, cache)
        scope = self._scope(question, "query", viewer)
        state: QueryState | None = None
        try:
            trace = scope.run(trace_id)
            hit = scope.run(self._remembered, key, trace) if key else None
            if hit is None:
                stream = scope.run(
                    self._runner(viewer, cache).stream, pipeline.steps, QueryState(question=valid_unicode(question))
                )
                for item in scope.iterate(stream):
                    if isinstance(item, QueryState):
                        state = item
                    else:
                        yield item
        except BaseException as error:
            scope.close(error)
            raise
        scope.close()
        if hit is not None:  # a remembered answer streams as one delta
            yield StreamChunk(delta=hit.text)
            yield hit
            return
        yield self._remember(key, final_answer(pipeline, state or QueryState(question=valid_unicode(question)), trace))

    async def aquery(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True,
        principals: list[str] | None = None,
    ) -> Answer:
        """`query` for asyncio callers: retrieval runs in worker threads, model calls are
        native async, so many queries can wait on remote providers at once."""
        return await self._arun(self._default(top_k, filters), question, root="query", cache=cache,
                                principals=principals, remember=True)  # fmt: skip

    def run_pipeline(self, pipeline: Pipeline | str, question: str, *, principals: list[str] | None = None) -> Answer:
        """Answer with a pipeline (an object, or a name in `[pipelines] dir`; "default" is built in);
        every retrieve step of it (fan-out branches included) reads as `principals`."""
        pipeline = self.get_pipeline(pipeline)
        return self._run(pipeline, question, root=f"pipeline {pipeline.name}", principals=principals)

    async def arun_pipeline(
        self, pipeline: Pipeline | str, question: str, *, principals: list[str] | None = None
    ) -> Answer:
        pipeline = self.get_pipeline(pipeline)
        return await self._arun(pipeline, question, root=f"pipeline {pipeline.name}", principals=principals)

    def _default(self, top_k: int | None, filters: Filters | None) -> Pipeline:
        return default_pipeline(self.components.retrieval, self.config.query, top_k=top_k, filters=filters)

    def _runner(self, viewer: Viewer, cache: bool = True) -> PipelineRunner:
        context = StepContext(
            retriever=self.components.retriever, llm=self.components.llm.llm(cache=cache), prompt=self.prompt,
            query=self.config.query, model=self.config.llm, prompts=self.config.prompts, viewer=viewer,
        )  # fmt: skip
        return PipelineRunner(context, self.components.tracing)

    def _scope_managers(self, question: str, root: str, viewer: Viewer) -> list[Any]:
        """A query's scopes: its budget, its deadline, its root span."""
        return [
            self.components.llm.budget.query(),
            deadline(self.config.reliability.deadline),
            self.components.tracing.span(
                root, _viewer_attributes(viewer), content={"ragline.query": valid_unicode(question)}
            ),
        ]

    def _scope(self, question: str, root: str, viewer: Viewer) -> QueryScope:
        return QueryScope(*self._scope_managers(question, root, viewer))

    def _answer_key(self, pipeline: Pipeline, question: str, viewer: Viewer, cache: bool) -> str | None:
        """The answer-cache key of a default query, None when answers are not cached; read
        before retrieval, so an answer is stored under the generation it was built at."""
        if not cache or self.components.answers is None:
            return None
        return answer_key(
            self.config, question=valid_unicode(question), pipeline=pipeline.to_dict(),
            prompt_version=self.synthesis_prompt.version, model_identity=self.components.model_identity(),
            partition=viewer.partition, store=self.components.store_identity, generation=self.components.generation(),
        )  # fmt: skip

    def _remembered(self, key: str, trace: str) -> Answer | None:
        hit = self.components.answers.get(key, trace_id=trace)
        span = otel.get_current_span()
        span.set_attribute("ragline.cache.answer_hit", hit is not None)
        if hit is not None:  # what the answer shows, so its trace is hidden from whoever may not read it
            record_chunks(span, hit.sources, prefix="ragline.answer")
        return hit

    def _remember(self, key: str | None, answer: Answer) -> Answer:
        if key is not None:
            self.components.answers.put(key, answer)
        return answer

    def _run(
        self, pipeline: Pipeline, question: str, *, root: str, cache: bool = True, principals: list[str] | None = None,
        remember: bool = False,
    ) -> Answer:
        viewer = self.components.access.viewer(principals)
        key = self._answer_key(pipeline, question, viewer, cache) if remember else None
        scope = self._scope(question, root, viewer)
        try:
            trace = scope.run(trace_id)
            hit = scope.run(self._remembered, key, trace) if key else None
            if hit is None:
                state = scope.run(
                    self._runner(viewer, cache).run, pipeline.steps, QueryState(question=valid_unicode(question))
                )
        except BaseException as error:
            scope.close(error)
            raise
        scope.close()
        return hit or self._remember(key, final_answer(pipeline, state, trace))

    async def _arun(
        self, pipeline: Pipeline, question: str, *, root: str, cache: bool = True, principals: list[str] | None = None,
        remember: bool = False,
    ) -> Answer:
        viewer = self.components.access.viewer(principals)
        key = self._answer_key(pipeline, question, viewer, cache) if remember else None
        with ExitStack() as stack:
            for manager in self._scope_managers(question, root, viewer):
                stack.enter_context(manager)
            trace = trace_id()
            if key and (hit := self._remembered(key, trace)):
                return hit
            state = await self._runner(viewer, cache).arun(pipeline.steps, QueryState(question=valid_unicode(question)))
        return self._remember(key, final_answer(pipeline, state, trace))

    def close(self) -> None:
        self.components.close()

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _viewer_attributes(viewer: Viewer) -> dict[str, Any]:
    """What a trace keeps of who asked: the hash of the effective principals, never names."""
    if viewer.admin:
        return {"ragline.access.admin": True}
    return {"ragline.access.principals_hash": viewer.partition} if viewer.restricted else {}
