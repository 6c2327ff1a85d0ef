"""`[query]`, `[prompts]` and `[pipelines]`: what a query shows the model, with which prompt, through which steps."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ragline.settings import Section


class QueryConfig(Section):
    top_k: int = Field(4, ge=1, description="Chunks given to the LLM as numbered sources.")
    max_source_chars: int = Field(1200, ge=100, description="Each source is cut to this many characters.")


class PromptsConfig(Section):
    dir: Path = Field(Path("prompts"), description="Your prompt files (NAME.j2) and manifest.json.")
    synthesis: str = Field(
        "synthesis", description="The answer prompt: name, name@label or name@hash; a bare name falls back to ragline's built-in prompt when the folder has none."
    )


class PipelinesConfig(Section):
    dir: Path = Field(Path("pipelines"), description="Pipeline files: NAME.yaml, .toml or .json.")
