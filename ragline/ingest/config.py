"""`[chunking]`, `[ingest]` and `[[sources]]`: what is read, and how it is cut and written."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragline.settings import Section


class ChunkingConfig(Section):
    chunk_size: int = Field(
        200, ge=32, description="Maximum tokens (words and punctuation) per chunk; MiniLM reads ~256 word pieces."
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens repeated from the end of the previous chunk.")

    @model_validator(mode="after")
    def _overlap_smaller_than_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        return self


class IngestConfig(Section):
    max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Larger documents are reported as too large, not parsed."
    )
    max_delete_fraction: float = Field(
        0.2, ge=0.0, le=1.0,
        description="A run refuses to delete more than this share of a source's documents (see allow_mass_delete).",
    )
    allow_mass_delete: bool = False
    batch_chunks: int = Field(256, ge=1, description="Chunks embedded and written per ledger commit.")


class SourceConfig(BaseModel):
    """One `[[sources]]` entry: a connector kind plus that connector's own settings."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="filesystem, web, dataset, sql, or a plugin's kind.")

    def connector_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
