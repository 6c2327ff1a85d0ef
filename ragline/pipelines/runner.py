"""The one runner every query goes through: `Rag.query`, `query_stream`, `aquery`,
`run_pipeline` and `arun_pipeline` all run a pipeline's steps here.

Steps run in order, each in its own span, until one answers. The runner owns control flow:
a `Branch` picks the steps to run, a `Parallel` runs its branches at once (threads when
sync, tasks when async) and merges their states. `stream` runs every step but the last as
usual and streams the last one when it is a model step, so a streamed query and a
completed one take the same steps.

Every run happens inside a `QueryScope`: one contextvars context holding the query's budget
scope, deadline and root span. Each piece of work (every step, every next piece of a
stream) runs inside it, so a streamed answer never leaks its scope into the caller between
pieces and every span of the query lands in one trace.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

from ragline.llm.base import StreamChunk
from ragline.pipelines.config import check_question
from ragline.pipelines.context import StepContext
from ragline.pipelines.pipeline import Pipeline, PipelineError
from ragline.pipelines.steps import Branch, ModelStep, Parallel, QueryState
from ragline.tracing.setup import Tracing
from ragline.tracing.spans import ContextThreadPoolExecutor, current_trace_id, record_hits

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


class PipelineRunner:
    """`run`, `arun` and `stream` are where every query enters: each refuses a question
    longer than `query.max_question_chars` before any step runs."""

    def __init__(self, context: StepContext, tracing: Tracing):
        self.context = context
        self.tracing = tracing

    def run(self, steps: list[Any], state: QueryState) -> QueryState:
        self._check(state)
        return self._run(steps, state)

    async def arun(self, steps: list[Any], state: QueryState) -> QueryState:
        self._check(state)
        return await self._arun(steps, state)

    def _check(self, state: QueryState) -> None:
        check_question(state.question, self.context.query.max_question_chars)

    def _run(self, steps: list[Any], state: QueryState) -> QueryState:
        for step in steps:
            with self.tracing.span(f"step {step.kind}", {"ragline.step": step.kind}) as span:
                state = self._run_one(step, state)
                _record_step(span, step.kind, state)
            if state.answer is not None:
                break
        return state

    def _run_one(self, step: Any, state: QueryState) -> QueryState:
        if isinstance(step, Branch):
            return self._run(step.choose(state), state)
        if isinstance(step, Parallel):
            with ContextThreadPoolExecutor(max_workers=len(step.branches)) as pool:
                results = list(pool.map(lambda steps: self._run(steps, state), step.branches))
            return step.merged(state, results)
        return step.run(state, self.context)

    async def _arun(self, steps: list[Any], state: QueryState) -> QueryState:
        for step in steps:
            with self.tracing.span(f"step {step.kind}", {"ragline.step": step.kind}) as span:
                state = await self._arun_one(step, state)
                _record_step(span, step.kind, state)
            if state.answer is not None:
                break
        return state

    async def _arun_one(self, step: Any, state: QueryState) -> QueryState:
        if isinstance(step, Branch):
            return await self._arun(step.choose(state), state)
        if isinstance(step, Parallel):
            results = await asyncio.gather(*(self._arun(steps, state) for steps in step.branches))
            return step.merged(state, list(results))
        return await step.arun(state, self.context)

    def stream(self, steps: list[Any], state: QueryState) -> Iterator[StreamChunk | QueryState]:
        """The model's text deltas of the last step as they come, then the final state; a
        pipeline that answers earlier (or whose last step is no model step) yields its
        answer's text as one delta."""
        self._check(state)
        *head, last = steps
        state = self._run(head, state)
        streamed = False
        if state.answer is None and isinstance(last, ModelStep):
            with self.tracing.span(f"step {last.kind}", {"ragline.step": last.kind}) as span:
                for item in last.stream(state, self.context):
                    if isinstance(item, QueryState):
                        state = item
                    else:
                        streamed = True
                        yield item
                _record_step(span, last.kind, state)
        elif state.answer is None:
            state = self._run([last], state)
        if not streamed and state.answer is not None and state.answer.text:
            yield StreamChunk(delta=state.answer.text)
        yield state


def _record_step(span: Any, kind: str, state: QueryState) -> None:
    """Search steps leave the hits they produced on their span (document ids and scores)."""
    if kind in ("retrieve", "rerank", "mmr", "parallel"):
        record_hits(span, state.hits, prefix=f"ragline.{'rerank' if kind == 'rerank' else 'retrieval'}")
    elif kind == "rewrite":
        span.set_attribute("ragline.rewrite.count", len(state.queries))


def final_answer(pipeline: Pipeline, state: QueryState, trace_id: str):
    if state.answer is None:
        raise PipelineError(
            f"pipeline {pipeline.name!r} ended without an answer: end it with a synthesize or respond step"
        )
    return state.answer.model_copy(update={"trace_id": trace_id})


def trace_id() -> str:
    """The query's trace id (its root span's), or a fresh id when tracing is off."""
    return current_trace_id() or uuid.uuid4().hex
