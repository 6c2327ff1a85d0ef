"""Data models shared across ragline: what flows between connectors, ingest, store and pipelines.

These shapes are the public contract (`ragline.open(...).ingest/retrieve/query` and the CLI's
`--json` output); change them only additively.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class Chunk(BaseModel):
    """One embeddable piece of a document, with the payload that travels into the store."""

    chunk_id: str
    document_id: str
    source: str
    text: str
    chunk_index: int
    content_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    readers: list[str] = Field(default_factory=list, description="Principals that may read it (access control).")
    context: str = Field("", description="Header naming its document and section: indexed with the text, not part of it.")

    @property
    def indexed_text(self) -> str:
        return indexed_text(self.context, self.text)


def indexed_text(context: str | None, text: str) -> str:
    """What is embedded and BM25-encoded for a chunk: its contextual header, then its text."""
    return f"{context}\n\n{text}" if context else text


class Hit(BaseModel):
    """A retrieved chunk with its score."""

    document_id: str
    chunk_id: str
    score: float
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class IngestError(BaseModel):
    document: str
    error: str


class IngestReport(BaseModel):
    """What one ingest run did, per document class; `errors` names each failed document."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    reconciled: int = Field(0, description="Documents re-processed or adopted because index and ledger disagreed.")
    permissions_updated: int = Field(
        0, description="Unchanged documents whose readers changed: their points' payloads rewritten, nothing embedded.",
    )
    errors: list[IngestError] = Field(default_factory=list)
    interrupted: bool = Field(
        False, description="Stopped between write batches: what was written is committed, nothing was deleted.",
    )

    @model_serializer(mode="wrap")
    def _rare_fields_only_when_set(self, handler: SerializerFunctionWrapHandler):
        """An ordinary run's JSON keeps the shape it always had; `interrupted` and
        `permissions_updated` show when they happened."""
        data = handler(self)
        if isinstance(data, dict):
            if not self.interrupted:
                data.pop("interrupted", None)
            if not self.permissions_updated:
                data.pop("permissions_updated", None)
        return data

    def merge(self, other: IngestReport) -> None:
        """Add another run's counts and errors to this report (one report per CLI call)."""
        for field in ("added", "updated", "unchanged", "deleted", "failed", "chunks_embedded", "reconciled",
                      "permissions_updated"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.errors.extend(other.errors)
        self.interrupted = self.interrupted or other.interrupted


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Attempt(BaseModel):
    """One try at one provider during a model call: what answered, what failed and why."""

    provider: str
    model: str
    outcome: Literal["ok", "error", "skipped"]
    error_kind: str | None = Field(None, description="rate_limit, server, timeout, connection, ... (see ErrorKind).")
    error: str | None = None
    status: int | None = None
    latency_ms: float = 0.0
    cost_usd: float = Field(0.0, description="What this try was charged against the budget.")


class Citation(BaseModel):
    """A numbered source the answer cites with an `[n]` marker."""

    n: int
    document_id: str
    chunk_id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class Answer(BaseModel):
    text: str
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Citation] = Field(
        default_factory=list, description="Every numbered source shown to the model, cited or not."
    )
    citations_attributed: bool = Field(
        False, description="True when the model wrote no [n] markers and citations come from word overlap."
    )
    model: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    trace_id: str
    provider: str | None = Field(None, description="The provider that answered (None: no model call).")
    cached: bool = Field(False, description="True when the answer came from the response cache.")
    attempts: list[Attempt] = Field(default_factory=list, description="Every provider try, in order.")
    prompt_version: str | None = Field(None, description="The exact prompt (name@content-hash) that produced the answer.")
