"""`StepContext`: everything a pipeline step may use, and nothing else.

Steps receive their dependencies (the retriever, the model stack, the prompts, the settings
they default from); they never see `Rag` and never run other steps: control flow (branches,
fan-out) belongs to the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragline.access.principals import Viewer
from ragline.llm.base import ChatRequest, LLMProvider
from ragline.llm.config import LLMConfig
from ragline.models import Citation, Hit
from ragline.pipelines.config import PromptsConfig, QueryConfig
from ragline.pipelines.prompts import Prompt
from ragline.pipelines.synthesis import number_sources
from ragline.retrieval.retriever import Retriever


@dataclass(frozen=True)
class StepContext:
    retriever: Retriever
    llm: LLMProvider
    prompt: Callable[[str], Prompt]  # name, name@label or name@hash -> Prompt
    query: QueryConfig
    model: LLMConfig
    prompts: PromptsConfig
    viewer: Viewer  # who the run reads as: every search is filtered by it, every request partitioned

    def request(self, prompt_ref: str, *, max_tokens: int | None = None, **variables) -> ChatRequest:
        """The one way a step builds a model request: the prompt rendered, `[llm]`'s
        parameters, the prompt's version for caches, cassettes and traces."""
        prompt = self.prompt(prompt_ref)
        return ChatRequest(
            messages=prompt.render(**variables), max_tokens=max_tokens or self.model.max_tokens,
            temperature=self.model.temperature, prompt_version=prompt.version,
            partition=self.viewer.partition,
        )  # fmt: skip

    def sources(self, hits: list[Hit]) -> list[Citation]:
        return number_sources(hits, self.query.max_source_chars)
