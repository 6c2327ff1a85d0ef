"""The one mapping between ragline's records and store points: a chunk becomes a point's
payload on the way in, and a scored point becomes a `Hit` on the way out."""

from __future__ import annotations

from ragline.access.principals import READERS_FIELD
from ragline.models import Chunk, Hit
from ragline.retrieval.store import CONTEXT_FIELD, TEXT_FIELD, ScoredPoint, StoredPoint


def chunk_point(chunk: Chunk, vector: list[float], second: list[float] | None = None) -> StoredPoint:
    """The point a chunk is stored as: its metadata plus the fields ragline reads back, and
    its second-stage vector when the store holds them."""
    payload = {
        **chunk.metadata,
        "document_id": chunk.document_id,
        "source": chunk.source,
        "chunk_id": chunk.chunk_id,
        "chunk_index": chunk.chunk_index,
        "content_hash": chunk.content_hash,
        TEXT_FIELD: chunk.text,
        CONTEXT_FIELD: chunk.context,
        READERS_FIELD: chunk.readers,  # after the metadata: a metadata key never overrides it
    }
    return StoredPoint(id=chunk.chunk_id, vector=vector, payload=payload, second=second)


def point_hit(point: ScoredPoint) -> Hit:
    """A search result as a Hit: the payload's other fields become its metadata."""
    payload = dict(point.payload)
    return Hit(
        document_id=payload.pop("document_id"),
        chunk_id=payload.pop("chunk_id", point.id),
        score=point.score,
        text=payload.pop(TEXT_FIELD, ""),
        metadata=payload,
    )
