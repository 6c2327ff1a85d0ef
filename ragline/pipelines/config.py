"""`[query]`, `[prompts]` and `[pipelines]`: what a query shows the model, with which prompt, through which steps."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ragline.settings import Section


class QueryConfig(Section):
    top_k: int = Field(4, ge=1, description="Chunks given to the LLM as numbered sources.")
    max_source_chars: int = Field(1200, ge=100, description="Each source is cut to this many characters.")
    max_question_chars: int = Field(
        8000, ge=1, description="Longer questions are refused: embedding and BM25 cost grows with the text."
    )


def check_question(question: str, limit: int) -> None:
    """Refuse a question longer than `limit` characters (`query.max_question_chars`): a
    megabyte of question costs many seconds of CPU before anything is answered."""
    if len(question) > limit:
        raise ValueError(
            f"the question is {len(question)} characters long; the limit is {limit} (query.max_question_chars)"
        )


class PromptsConfig(Section):
    dir: Path = Field(Path("prompts"), description="Your prompt files (NAME.j2) and manifest.json.")
    synthesis: str = Field(
        "synthesis", description="The answer prompt: name, name@label or name@hash; a bare name falls back to ragline's built-in prompt when the folder has none."
    )


class PipelinesConfig(Section):
    dir: Path = Field(Path("pipelines"), description="Pipeline files: NAME.yaml, .toml or .json.")
