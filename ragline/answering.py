"""The answering half of `Rag`: the model stack (chain, cache, tracing, budget), the prompt,
and `query` / `query_stream` / `aquery`.

Every query runs in its own `QueryScope`: one contextvars context holding the query's budget
scope, its deadline and its root span. Each step (retrieval, every next piece of the model's
stream) runs inside that context, so a streamed answer never leaks its scope into the caller
between pieces and every span of the query lands in one trace.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ragline.models import Answer, Citation, Usage
from ragline.pipelines.pipeline import Pipeline, PipelineError, find_pipeline
from ragline.pipelines.prompts import Prompt, PromptError, PromptRegistry, builtin_prompt
from ragline.pipelines.providers.base import ChatRequest, Completion, LLMProvider, StreamChunk
from ragline.pipelines.reliability.breaker import CircuitBreaker
from ragline.pipelines.reliability.budget import Budget
from ragline.pipelines.reliability.cache import CachedProvider, RedisResponseCache, ResponseCache, SqliteResponseCache
from ragline.pipelines.reliability.chain import ChainMember, ModelChain, deadline
from ragline.pipelines.reliability.replay import Cassette, RecordingProvider, ReplayProvider
from ragline.pipelines.reliability.wrapper import identity
from ragline.pipelines.steps import QueryState
from ragline.retrieval.store import Filters
from ragline.tracing import Tracing, current_trace_id, record_hits, setup_tracing

if TYPE_CHECKING:
    from ragline.config import RaglineConfig
    from ragline.models import Hit

RESPONSE_CACHE_FILE = "llm-cache.sqlite"
BUDGET_FILE = "budget.sqlite"
NO_SOURCES_ANSWER = "No indexed document matches this question, so there is nothing to answer from."

T = TypeVar("T")


class QueryScope:
    """The context one query's steps run in; `close` ends its scopes (and root span)."""

    def __init__(self, *managers: Any):
        self._context = contextvars.copy_context()
        self._stack = ExitStack()
        for manager in managers:
            self._context.run(self._stack.enter_context, manager)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self._context.run(fn, *args)

    def iterate(self, iterator: Iterator[T]) -> Iterator[T]:
        """Drive `iterator` one step at a time inside the scope."""
        while True:
            try:
                item = self._context.run(next, iterator)
            except StopIteration:
                return
            yield item

    def close(self, error: BaseException | None = None) -> None:
        self._context.run(self._stack.__exit__, type(error) if error else None, error, error.__traceback__ if error else None)


class Answering:
    """Mixed into `Rag`, which provides `config`, `path`, `retrieve` and the injected provider."""

    config: RaglineConfig
    path: Path
    _injected_provider: LLMProvider | None
    _retrieve_lock: threading.Lock
    retrieve: Callable[..., list[Hit]]

    def prompt(self, ref: str) -> Prompt:
        """A prompt by `name`, `name@label` or `name@hash`: the `[prompts]` folder first, then
        ragline's built-in prompts for a bare name the folder does not have."""
        folder = Path(self.config.prompts.dir)
        try:
            return PromptRegistry(folder).get(ref)
        except PromptError:
            if "@" in ref or (folder / f"{ref}.j2").exists():
                raise  # an explicit version, or a broken file of the user's: never guess
            return builtin_prompt(ref)

    @cached_property
    def synthesis_prompt(self) -> Prompt:
        return self.prompt(self.config.prompts.synthesis)

    @cached_property
    def budget(self) -> Budget:
        """Cost ceilings: per query, for this Rag's lifetime (the run), per day (persisted)."""
        return Budget(self.config.budget, day_path=self.path / BUDGET_FILE)

    @cached_property
    def tracing(self) -> Tracing:
        return setup_tracing(self.config.tracing, self.path)

    @cached_property
    def chain(self) -> ModelChain:
        """The providers behind one retry/fallback loop: `[[models]]`, `[llm]`, or the injected one."""
        from ragline.pipelines.providers.factory import (
            make_chain,
            model_configs,
            price_of,
        )

        provider = self._injected_provider
        if isinstance(provider, ModelChain):
            return provider
        if provider is not None:
            spec = model_configs(self.config)[0]
            member = ChainMember(provider, price=price_of(spec), breaker=CircuitBreaker(self.config.reliability.breaker))
            return ModelChain([member], policy=self.config.reliability, budget=self.budget)
        return make_chain(self.config, self.budget)

    @cached_property
    def llm(self) -> LLMProvider:
        """The model stack queries use: traced, recorded or replayed when configured, over the
        response cache (when enabled), over the chain."""
        settings = self.config.cache
        if not settings.enabled:
            return self._uncached_llm
        if settings.backend == "redis":
            cache: ResponseCache = RedisResponseCache(settings.redis_url)
        else:
            cache = SqliteResponseCache(self.path / RESPONSE_CACHE_FILE)
        return self._outer(CachedProvider(self.chain, cache, ttl=settings.ttl_seconds))

    @cached_property
    def _uncached_llm(self) -> LLMProvider:
        return self._outer(self.chain)

    @cached_property
    def cassette(self) -> Cassette | None:
        settings = self.config.replay
        if settings.record:
            return Cassette.create(settings.record)
        return Cassette.load(settings.replay) if settings.replay else None

    def _outer(self, stack: LLMProvider) -> LLMProvider:
        """Record or replay the whole stack (so a replay returns exactly what was recorded,
        attempts and cache flags included), then trace it."""
        if self.config.replay.replay:
            stack = ReplayProvider(self.cassette, identity=identity(stack))
        elif self.config.replay.record:
            stack = RecordingProvider(stack, self.cassette)
        return self.tracing.wrap(stack)

    def query(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True
    ) -> Answer:
        """Answer from the retrieved chunks, citing them as numbered sources.

        `cache=False` skips the response cache (neither read nor written)."""
        for event in self.query_stream(question, top_k=top_k, filters=filters, cache=cache):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("query stream ended without an answer")  # pragma: no cover

    def query_stream(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True
    ) -> Iterator[StreamChunk | Answer]:
        """Stream the answer: text deltas as `StreamChunk`s, then the final `Answer`.

        A provider failing before the first token falls back along the chain; after it, the
        stream raises `StreamInterrupted` with the partial text."""
        scope = self._scope(question)
        try:
            trace_id = scope.run(_trace_id)
            prepared = scope.run(self._prepare, question, top_k, filters)
            if isinstance(prepared, Answer):
                yield StreamChunk(delta=prepared.text)
                yield prepared.model_copy(update={"trace_id": trace_id})
                return
            sources, request = prepared
            parts: list[str] = []
            final = StreamChunk()
            model = self.llm if cache else self._uncached_llm
            for chunk in scope.iterate(scope.run(model.stream, request)):
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield chunk
                else:
                    final = chunk
        except BaseException as error:
            scope.close(error)
            raise
        scope.close()
        done = Completion(
            text="".join(parts), model=final.model or self.chain.model, usage=final.usage or Usage(),
            provider=final.provider, cost_usd=final.cost_usd or 0.0, cached=final.cached, attempts=final.attempts,
        )  # fmt: skip
        yield self.compose_answer(done, sources, request, trace_id)

    async def aquery(
        self, question: str, *, top_k: int | None = None, filters: Filters | None = None, cache: bool = True
    ) -> Answer:
        """`query` for asyncio callers: retrieval runs in a worker thread, the model call is
        native async, so many queries can wait on remote providers at once."""
        with ExitStack() as stack:
            for manager in self._scope_managers(question):
                stack.enter_context(manager)
            trace_id = _trace_id()
            prepared = await asyncio.to_thread(contextvars.copy_context().run, self._prepare, question, top_k, filters)
            if isinstance(prepared, Answer):
                return prepared.model_copy(update={"trace_id": trace_id})
            sources, request = prepared
            done = await (self.llm if cache else self._uncached_llm).acomplete(request)
        return self.compose_answer(done, sources, request, trace_id)

    def _scope_managers(self, question: str, root: str = "query") -> list[Any]:
        return [
            self.budget.query(),
            deadline(self.config.reliability.deadline),
            self.tracing.span(root, content={"ragline.query": question}),
        ]

    def _scope(self, question: str) -> QueryScope:
        return QueryScope(*self._scope_managers(question))

    def _prepare(
        self, question: str, top_k: int | None, filters: Filters | None
    ) -> tuple[list[Citation], ChatRequest] | Answer:
        """Retrieve and build the model request; an Answer when there is nothing to ask about."""
        from ragline.pipelines.synthesis import build_messages

        top_k = top_k or self.config.query.top_k
        # The embedded engine and the embedder are not thread-safe; aquery retrieves in threads.
        with self._retrieve_lock, self.tracing.span("retrieve", {"ragline.retrieval.top_k": top_k}) as span:
            hits = self.retrieve(question, top_k=top_k, filters=filters)
            record_hits(span, hits)
        if not hits:
            return Answer(text=NO_SOURCES_ANSWER, model="none", trace_id="")
        sources = self.numbered_sources(hits)
        prompt = self.synthesis_prompt
        request = ChatRequest(
            messages=build_messages(question, sources, prompt), max_tokens=self.config.llm.max_tokens,
            temperature=self.config.llm.temperature, prompt_version=prompt.version,
        )  # fmt: skip
        return sources, request

    def numbered_sources(self, hits: list[Hit]) -> list[Citation]:
        from ragline.pipelines.synthesis import number_sources

        return number_sources(hits, self.config.query.max_source_chars)

    @staticmethod
    def compose_answer(done: Completion, sources: list[Citation], request: ChatRequest, trace_id: str = "") -> Answer:
        """The Answer for a completion over numbered sources: [n] markers resolved, or citations
        attributed by word overlap when the model wrote none."""
        from ragline.pipelines.synthesis import attribute_citations, resolve_citations

        text = done.text.strip()
        citations = resolve_citations(text, sources)
        attributed = not citations
        if attributed:
            citations = attribute_citations(text, sources)
        return Answer(
            text=text, citations=citations, citations_attributed=attributed and bool(citations),
            sources=sources, model=done.model, usage=done.usage, cost_usd=done.cost_usd, trace_id=trace_id,
            provider=done.provider, cached=done.cached, attempts=done.attempts, prompt_version=request.prompt_version,
        )  # fmt: skip

    # --- pipelines ---

    def run_pipeline(self, pipeline: Pipeline | str, question: str) -> Answer:
        """Answer with a pipeline (an object, or a name in `[pipelines] dir`; "default" is built in)."""
        pipeline = self.get_pipeline(pipeline)
        scope = QueryScope(*self._scope_managers(question, f"pipeline {pipeline.name}"))
        try:
            trace_id = scope.run(_trace_id)
            state = scope.run(self.run_steps, pipeline.steps, QueryState(question=question))
        except BaseException as error:
            scope.close(error)
            raise
        scope.close()
        return _final(pipeline, state, trace_id)

    async def arun_pipeline(self, pipeline: Pipeline | str, question: str) -> Answer:
        pipeline = self.get_pipeline(pipeline)
        with ExitStack() as stack:
            for manager in self._scope_managers(question, f"pipeline {pipeline.name}"):
                stack.enter_context(manager)
            trace_id = _trace_id()
            state = await self.arun_steps(pipeline.steps, QueryState(question=question))
        return _final(pipeline, state, trace_id)

    def run_steps(self, steps: list[Any], state: QueryState) -> QueryState:
        """Run steps in order, each in its own span, until one answers."""
        for step in steps:
            with self.tracing.span(f"step {step.kind}", {"ragline.step": step.kind}) as span:
                state = step.run(state, self)
                _record_step(span, step.kind, state)
            if state.answer is not None:
                break
        return state

    async def arun_steps(self, steps: list[Any], state: QueryState) -> QueryState:
        for step in steps:
            with self.tracing.span(f"step {step.kind}", {"ragline.step": step.kind}) as span:
                state = await step.arun(state, self)
                _record_step(span, step.kind, state)
            if state.answer is not None:
                break
        return state

    def get_pipeline(self, pipeline: Pipeline | str) -> Pipeline:
        """A pipeline object as is, or by name from `[pipelines] dir` ("default" is built in)."""
        if isinstance(pipeline, Pipeline):
            return pipeline
        return find_pipeline(pipeline, Path(self.config.pipelines.dir), rerank=self.config.retrieval.rerank != "none")

    def _close_models(self) -> None:
        for name in ("llm", "_uncached_llm"):
            layer = self.__dict__.pop(name, None)
            while layer is not None:  # down the wrappers to the cache (the chain closes below)
                if isinstance(layer, CachedProvider):
                    layer.cache.close()
                layer = getattr(layer, "wrapped", None)
        chain = self.__dict__.pop("chain", None)
        if chain is not None and self._injected_provider is None:
            chain.close()  # an injected provider is the caller's to close
        budget = self.__dict__.pop("budget", None)
        if budget is not None:
            budget.close()
        tracing = self.__dict__.pop("tracing", None)
        if tracing is not None:
            tracing.shutdown()


def _record_step(span: Any, kind: str, state: QueryState) -> None:
    """Search steps leave the hits they produced on their span (document ids and scores)."""
    if kind in ("retrieve", "rerank", "parallel"):
        record_hits(span, state.hits, prefix=f"ragline.{'rerank' if kind == 'rerank' else 'retrieval'}")
    elif kind == "rewrite":
        span.set_attribute("ragline.rewrite.count", len(state.queries))


def _final(pipeline: Pipeline, state: QueryState, trace_id: str) -> Answer:
    if state.answer is None:
        raise PipelineError(
            f"pipeline {pipeline.name!r} ended without an answer: end it with a synthesize or respond step"
        )
    return state.answer.model_copy(update={"trace_id": trace_id})


def _trace_id() -> str:
    """The query's trace id (its root span's), or a fresh id when tracing is off."""
    return current_trace_id() or uuid.uuid4().hex
