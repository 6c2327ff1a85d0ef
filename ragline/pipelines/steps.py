"""The typed steps a query pipeline is made of, each one a small pydantic model.

A step reads and returns a `QueryState`; a step that sets `state.answer` ends the pipeline.
Every step is plain data (`kind` plus its settings), so a pipeline round-trips to a dict,
YAML or TOML and loads back identical. A work step gets a `StepContext` (its dependencies);
`Branch` and `Parallel` only decide which steps run and how results merge: the runner
(`ragline.pipelines.runner`) runs them. Steps that call the LLM have native async versions
and stream; the others run in a worker thread (with the caller's context) when async.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ragline.llm.base import ChatRequest, Completion, StreamChunk
from ragline.llm.streams import StreamRecorder
from ragline.models import Answer, Citation, Hit
from ragline.pipelines.context import StepContext
from ragline.pipelines.synthesis import compose_answer, no_sources_answer
from ragline.retrieval.fusion import fuse


class QueryState(BaseModel):
    """What flows between steps."""

    question: str
    queries: list[str] = Field(default_factory=list, description="Rewrites to search with (empty: the question).")
    hits: list[Hit] = Field(default_factory=list)
    vectors: dict[str, list[float]] = Field(
        default_factory=dict, description="Dense vectors by chunk id, when a retrieve step fetched them (MMR)."
    )
    answer: Answer | None = None


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """`kind` plus the settings that differ from their defaults (nested steps likewise)."""
        data: dict[str, Any] = {"kind": self.kind}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name != "kind" and value != field.get_default(call_default_factory=True):
                data[name] = _plain(value)
        return data


class _WorkStep(_Step):
    """A step that does work with its dependencies (everything but branch and parallel)."""

    @abstractmethod
    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        """This step's work on the state (sync)."""

    async def arun(self, state: QueryState, ctx: StepContext) -> QueryState:
        return await asyncio.to_thread(contextvars.copy_context().run, self.run, state, ctx)


def _plain(value: Any) -> Any:
    if isinstance(value, _Step):
        return value.to_dict()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class Retrieve(_WorkStep):
    """First-stage search for the question (or each rewrite, fused by RRF)."""

    kind: Literal["retrieve"] = "retrieve"
    top_k: int = Field(20, ge=1)
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    filters: dict | None = None
    with_vectors: bool = Field(False, description="Fetch the hits' dense vectors for a later mmr step.")

    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        queries = state.queries or [state.question]
        vectors: dict[str, list[float]] = {}
        rankings = []
        for query in queries:
            hits, found = ctx.retriever.search(
                query, self.top_k, self.filters, readers=ctx.viewer.readable, mode=self.mode,
                with_vectors=self.with_vectors,
            )
            rankings.append(hits)
            vectors.update(found)
        hits = rankings[0] if len(rankings) == 1 else fuse(rankings, self.top_k)
        return state.model_copy(update={"hits": hits, "vectors": vectors})


class Rerank(_WorkStep):
    """Second-stage re-scoring (`retrieval.rerank`) of the best `top_n` hits against the original question."""

    kind: Literal["rerank"] = "rerank"
    top_n: int | None = Field(None, ge=1, description="Default: retrieval.rerank_depth.")
    fusion: Literal["rrf", "none"] | None = Field(None, description="Default: retrieval.rerank_fusion.")

    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        if not state.hits:
            return state
        hits = ctx.retriever.rerank(state.question, state.hits, top_n=self.top_n, fusion=self.fusion)
        return state.model_copy(update={"hits": hits})


class Diversify(_WorkStep):
    """Maximal marginal relevance over the best `top_n` hits (fewer near-duplicates); needs a
    retrieve step with `with_vectors: true` before it."""

    kind: Literal["mmr"] = "mmr"
    top_n: int | None = Field(None, ge=1, description="Default: retrieval.rerank_depth.")
    mmr_lambda: float | None = Field(None, ge=0.0, le=1.0, description="Default: retrieval.mmr_lambda.")

    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        if not state.hits:
            return state
        hits = ctx.retriever.diversify(state.hits, state.vectors, top_n=self.top_n, lambda_=self.mmr_lambda)
        return state.model_copy(update={"hits": hits})


@dataclass
class _Call:
    """One model call a step is about to make, and what it needs to use the answer."""

    request: ChatRequest
    sources: list[Citation]


class ModelStep(_WorkStep):
    """A step that asks the model once: prepare the call, make it (sync, async or streamed),
    apply the answer."""

    max_tokens: int | None = Field(None, ge=1, description="Default: llm.max_tokens.")

    @abstractmethod
    def prepare(self, state: QueryState, ctx: StepContext) -> _Call | None:
        """The call to make; None when there is nothing to ask."""

    @abstractmethod
    def apply(self, state: QueryState, done: Completion, call: _Call) -> QueryState:
        """The state after the model answered."""

    def skipped(self, state: QueryState) -> QueryState:
        return state

    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        call = self.prepare(state, ctx)
        return self.skipped(state) if call is None else self.apply(state, ctx.llm.complete(call.request), call)

    async def arun(self, state: QueryState, ctx: StepContext) -> QueryState:
        call = self.prepare(state, ctx)
        if call is None:
            return self.skipped(state)
        return self.apply(state, await ctx.llm.acomplete(call.request), call)

    def stream(self, state: QueryState, ctx: StepContext) -> Iterator[StreamChunk | QueryState]:
        """`run` with the model's text deltas passed on as they come; the new state last."""
        call = self.prepare(state, ctx)
        if call is None:
            yield self.skipped(state)
            return
        received = StreamRecorder()
        for chunk in ctx.llm.stream(call.request):
            received.take(chunk)
            if chunk.delta:
                yield chunk
        yield self.apply(state, received.completion(ctx.llm.model), call)

    def _call(self, ctx: StepContext, prompt_ref: str, sources: list[Citation] | None = None, **variables) -> _Call:
        if sources is not None:
            variables["sources"] = sources
        return _Call(ctx.request(prompt_ref, max_tokens=self.max_tokens, **variables), sources or [])


class RewriteQuery(ModelStep):
    """Search with more than the literal question: `multi_query` asks for `n` rephrasings,
    `hyde` for a hypothetical answer passage (dense search matches passages to passages)."""

    kind: Literal["rewrite"] = "rewrite"
    strategy: Literal["multi_query", "hyde"] = "multi_query"
    n: int = Field(3, ge=1, le=10)
    prompt: str | None = Field(None, description="Default: the built-in prompt named like the strategy.")

    def prepare(self, state: QueryState, ctx: StepContext) -> _Call:
        return self._call(ctx, self.prompt or self.strategy, question=state.question, n=self.n)

    def apply(self, state: QueryState, done: Completion, call: _Call) -> QueryState:
        if self.strategy == "hyde":
            variants = [done.text.strip()]
        else:
            lines = (re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", line).strip() for line in done.text.splitlines())
            variants = [line for line in lines if line and line.lower() != state.question.lower()][: self.n]
        return state.model_copy(update={"queries": [state.question, *[v for v in variants if v]]})


class Synthesize(ModelStep):
    """The grounded answer from the best `top_k` hits, citing them as numbered sources."""

    kind: Literal["synthesize"] = "synthesize"
    top_k: int | None = Field(None, ge=1, description="Sources shown to the model; default: query.top_k.")
    prompt: str | None = Field(None, description="Default: [prompts] synthesis.")

    def prepare(self, state: QueryState, ctx: StepContext) -> _Call | None:
        sources = ctx.sources(state.hits[: self.top_k or ctx.query.top_k])
        if not sources:
            return None
        return self._call(ctx, self.prompt or ctx.prompts.synthesis, sources, question=state.question)

    def apply(self, state: QueryState, done: Completion, call: _Call) -> QueryState:
        return state.model_copy(update={"answer": compose_answer(done, call.sources, call.request)})

    def skipped(self, state: QueryState) -> QueryState:
        return state.model_copy(update={"answer": no_sources_answer()})


class Respond(_WorkStep):
    """A fixed answer, no model call (e.g. the `then` of a no-good-hits branch)."""

    kind: Literal["respond"] = "respond"
    text: str

    def run(self, state: QueryState, ctx: StepContext) -> QueryState:
        return state.model_copy(update={"answer": Answer(text=self.text, model="none", trace_id="")})


class NoHits(BaseModel):
    kind: Literal["no_hits"] = "no_hits"

    def holds(self, state: QueryState) -> bool:
        return not state.hits


class TopScoreBelow(BaseModel):
    """True when nothing scored at least `threshold` (mind the scale of the step before:
    cross-encoder logits after rerank, RRF scores after hybrid retrieval)."""

    kind: Literal["top_score_below"] = "top_score_below"
    threshold: float

    def holds(self, state: QueryState) -> bool:
        return not state.hits or max(h.score for h in state.hits) < self.threshold


Condition = Annotated[Union[NoHits, TopScoreBelow], Field(discriminator="kind")]


class Branch(_Step):
    """Run `then` when the condition holds, else `otherwise` (both plain step lists)."""

    kind: Literal["branch"] = "branch"
    when: Condition
    then: list[StepSpec]
    otherwise: list[StepSpec] = Field(default_factory=list)

    def choose(self, state: QueryState) -> list[Any]:
        return self.then if self.when.holds(state) else self.otherwise


class Parallel(_Step):
    """Fan out: each branch runs on its own copy of the state at the same time; their hits
    are merged by reciprocal rank fusion (`rrf`) or concatenated without duplicates."""

    kind: Literal["parallel"] = "parallel"
    branches: list[list[StepSpec]] = Field(min_length=1)
    merge: Literal["rrf", "concat"] = "rrf"
    top_k: int | None = Field(None, ge=1)

    def merged(self, state: QueryState, results: list[QueryState]) -> QueryState:
        rankings = [r.hits for r in results]
        if self.merge == "rrf":
            hits = fuse(rankings, self.top_k)
        else:
            first: dict[str, Hit] = {}
            for ranking in rankings:
                for hit in ranking:
                    first.setdefault(hit.chunk_id, hit)
            hits = list(first.values())[: self.top_k]
        vectors = {chunk: vector for r in results for chunk, vector in r.vectors.items()}
        answer = next((r.answer for r in results if r.answer), None)
        return state.model_copy(update={"hits": hits, "vectors": vectors, "answer": answer})


StepSpec = Annotated[
    Union[Retrieve, Rerank, Diversify, RewriteQuery, Synthesize, Respond, Branch, Parallel],
    Field(discriminator="kind"),
]
Branch.model_rebuild()
Parallel.model_rebuild()
