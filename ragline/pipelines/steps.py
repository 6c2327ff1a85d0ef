"""The typed steps a query pipeline is made of, each one a small pydantic model.

A step reads and returns a `QueryState`; a step that sets `state.answer` ends the pipeline.
Every step is plain data (`kind` plus its settings), so a pipeline round-trips to a dict,
YAML or TOML and loads back identical. Steps that call the LLM have native async versions;
the others run in a worker thread (with the caller's context) when the pipeline is async.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ragline.models import Answer, Citation, Hit
from ragline.pipelines.providers.base import ChatRequest, Completion
from ragline.tracing import ContextThreadPoolExecutor

if TYPE_CHECKING:
    from ragline.app import Rag

RRF_K = 60  # the usual reciprocal-rank-fusion constant


class QueryState(BaseModel):
    """What flows between steps."""

    question: str
    queries: list[str] = Field(default_factory=list, description="Rewrites to search with (empty: the question).")
    hits: list[Hit] = Field(default_factory=list)
    answer: Answer | None = None


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @abstractmethod
    def run(self, state: QueryState, rag: Rag) -> QueryState:
        """This step's work on the state (sync)."""

    def to_dict(self) -> dict[str, Any]:
        """`kind` plus the settings that differ from their defaults (nested steps likewise)."""
        data: dict[str, Any] = {"kind": self.kind}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name != "kind" and value != field.get_default(call_default_factory=True):
                data[name] = _plain(value)
        return data

    async def arun(self, state: QueryState, rag: Rag) -> QueryState:
        return await asyncio.to_thread(contextvars.copy_context().run, self.run, state, rag)


def _plain(value: Any) -> Any:
    if isinstance(value, _Step):
        return value.to_dict()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def fuse(rankings: list[list[Hit]], top_k: int | None = None) -> list[Hit]:
    """Reciprocal rank fusion of several hit lists by chunk; scores become RRF scores."""
    scores: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for hits in rankings:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            first_seen.setdefault(hit.chunk_id, hit)
    fused = sorted(first_seen, key=lambda chunk: -scores[chunk])
    return [first_seen[c].model_copy(update={"score": scores[c]}) for c in fused][:top_k]


class Retrieve(_Step):
    """First-stage search for the question (or each rewrite, fused by RRF)."""

    kind: Literal["retrieve"] = "retrieve"
    top_k: int = Field(20, ge=1)
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    filters: dict | None = None

    def run(self, state: QueryState, rag: Rag) -> QueryState:
        queries = state.queries or [state.question]
        rankings = [rag.retrieve(q, self.top_k, self.filters, mode=self.mode, rerank=False, mmr=False) for q in queries]
        hits = rankings[0] if len(rankings) == 1 else fuse(rankings, self.top_k)
        return state.model_copy(update={"hits": hits})


class Rerank(_Step):
    """Cross-encoder re-scoring of the best `top_n` hits against the original question."""

    kind: Literal["rerank"] = "rerank"
    top_n: int | None = Field(None, ge=1, description="Default: retrieval.rerank_top_n.")

    def run(self, state: QueryState, rag: Rag) -> QueryState:
        if rag.reranker is None:
            raise ValueError("a rerank step needs a reranker: set retrieval.rerank to 'onnx' or 'sentence-transformers'")
        top_n = self.top_n or rag.config.retrieval.rerank_top_n
        return state.model_copy(update={"hits": rag.reranker.rerank(state.question, state.hits, top_n=top_n)})


@dataclass
class _Call:
    """One model call a step is about to make, and what it needs to use the answer."""

    request: ChatRequest
    sources: list[Citation]


class _LLMStep(_Step):
    """A step that asks the model once: prepare the call, make it sync or async, apply it."""

    max_tokens: int | None = Field(None, ge=1, description="Default: llm.max_tokens.")

    @abstractmethod
    def prepare(self, state: QueryState, rag: Rag) -> _Call | None:
        """The call to make; None when there is nothing to ask."""

    @abstractmethod
    def apply(self, state: QueryState, rag: Rag, done: Completion, call: _Call) -> QueryState:
        """The state after the model answered."""

    def skipped(self, state: QueryState) -> QueryState:
        return state

    def run(self, state: QueryState, rag: Rag) -> QueryState:
        call = self.prepare(state, rag)
        return self.skipped(state) if call is None else self.apply(state, rag, rag.llm.complete(call.request), call)

    async def arun(self, state: QueryState, rag: Rag) -> QueryState:
        call = self.prepare(state, rag)
        if call is None:
            return self.skipped(state)
        return self.apply(state, rag, await rag.llm.acomplete(call.request), call)

    def _call(self, rag: Rag, prompt_ref: str, sources: list[Citation] | None = None, **variables) -> _Call:
        prompt = rag.prompt(prompt_ref)
        if sources is not None:
            variables["sources"] = sources
        request = ChatRequest(
            messages=prompt.render(**variables), max_tokens=self.max_tokens or rag.config.llm.max_tokens,
            temperature=rag.config.llm.temperature, prompt_version=prompt.version,
        )  # fmt: skip
        return _Call(request, sources or [])


class RewriteQuery(_LLMStep):
    """Search with more than the literal question: `multi_query` asks for `n` rephrasings,
    `hyde` for a hypothetical answer passage (dense search matches passages to passages)."""

    kind: Literal["rewrite"] = "rewrite"
    strategy: Literal["multi_query", "hyde"] = "multi_query"
    n: int = Field(3, ge=1, le=10)
    prompt: str | None = Field(None, description="Default: the built-in prompt named like the strategy.")

    def prepare(self, state: QueryState, rag: Rag) -> _Call:
        return self._call(rag, self.prompt or self.strategy, question=state.question, n=self.n)

    def apply(self, state: QueryState, rag: Rag, done: Completion, call: _Call) -> QueryState:
        if self.strategy == "hyde":
            variants = [done.text.strip()]
        else:
            lines = (re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", line).strip() for line in done.text.splitlines())
            variants = [line for line in lines if line and line.lower() != state.question.lower()][: self.n]
        return state.model_copy(update={"queries": [state.question, *[v for v in variants if v]]})


class Synthesize(_LLMStep):
    """The grounded answer from the best `top_k` hits, citing them as numbered sources."""

    kind: Literal["synthesize"] = "synthesize"
    top_k: int | None = Field(None, ge=1, description="Sources shown to the model; default: query.top_k.")
    prompt: str | None = Field(None, description="Default: [prompts] synthesis.")

    def prepare(self, state: QueryState, rag: Rag) -> _Call | None:
        sources = rag.numbered_sources(state.hits[: self.top_k or rag.config.query.top_k])
        if not sources:
            return None
        return self._call(rag, self.prompt or rag.config.prompts.synthesis, sources, question=state.question)

    def apply(self, state: QueryState, rag: Rag, done: Completion, call: _Call) -> QueryState:
        return state.model_copy(update={"answer": rag.compose_answer(done, call.sources, call.request)})

    def skipped(self, state: QueryState) -> QueryState:
        from ragline.answering import NO_SOURCES_ANSWER

        return state.model_copy(update={"answer": Answer(text=NO_SOURCES_ANSWER, model="none", trace_id="")})


class Respond(_Step):
    """A fixed answer, no model call (e.g. the `then` of a no-good-hits branch)."""

    kind: Literal["respond"] = "respond"
    text: str

    def run(self, state: QueryState, rag: Rag) -> QueryState:
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

    def run(self, state: QueryState, rag: Rag) -> QueryState:
        return rag.run_steps(self.then if self.when.holds(state) else self.otherwise, state)

    async def arun(self, state: QueryState, rag: Rag) -> QueryState:
        return await rag.arun_steps(self.then if self.when.holds(state) else self.otherwise, state)


class Parallel(_Step):
    """Fan out: each branch runs on its own copy of the state at the same time; their hits
    are merged by reciprocal rank fusion (`rrf`) or concatenated without duplicates."""

    kind: Literal["parallel"] = "parallel"
    branches: list[list[StepSpec]] = Field(min_length=1)
    merge: Literal["rrf", "concat"] = "rrf"
    top_k: int | None = Field(None, ge=1)

    def run(self, state: QueryState, rag: Rag) -> QueryState:
        with ContextThreadPoolExecutor(max_workers=len(self.branches)) as pool:
            results = list(pool.map(lambda steps: rag.run_steps(steps, state), self.branches))
        return self._merged(state, results)

    async def arun(self, state: QueryState, rag: Rag) -> QueryState:
        results = await asyncio.gather(*(rag.arun_steps(steps, state) for steps in self.branches))
        return self._merged(state, list(results))

    def _merged(self, state: QueryState, results: list[QueryState]) -> QueryState:
        rankings = [r.hits for r in results]
        if self.merge == "rrf":
            hits = fuse(rankings, self.top_k)
        else:
            first: dict[str, Hit] = {}
            for ranking in rankings:
                for hit in ranking:
                    first.setdefault(hit.chunk_id, hit)
            hits = list(first.values())[: self.top_k]
        answer = next((r.answer for r in results if r.answer), None)
        return state.model_copy(update={"hits": hits, "answer": answer})


StepSpec = Annotated[
    Union[Retrieve, Rerank, RewriteQuery, Synthesize, Respond, Branch, Parallel], Field(discriminator="kind")
]
Branch.model_rebuild()
Parallel.model_rebuild()
