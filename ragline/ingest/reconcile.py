"""Reconcile the ledger with the index, so neither can silently drift from the other.

The ledger decides what an ingest skips; if the index lost points behind its back (a
deleted or restored `qdrant/` folder) documents would stay "unchanged" and unsearchable
forever, and if the ledger lost rows (truncated, restored from an old backup) points would
stay searchable with nothing left to delete them. Every run compares the point count per
source (cheap); on a mismatch it compares point ids:

- a document with a point missing from the index is re-processed this run;
- a point no document owns is adopted from its payload (document id) as a document of
  unknown content, so the run re-processes it if the source still has it, and deletes it
  (within the mass-delete guard) if not; a stray point of a known document is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragline.failpoints import failpoint
from ragline.ingest.ledger import Ledger, LedgerEntry
from ragline.retrieval.store import VectorStore


@dataclass
class Reconciliation:
    source: str
    expected_points: int
    found_points: int
    damaged: set[str] = field(default_factory=set)  # documents with points missing from the index
    adopted: dict[str, list[str]] = field(default_factory=dict)  # unknown document -> its orphan points
    stray: list[str] = field(default_factory=list)  # orphan points of known documents

    @property
    def consistent(self) -> bool:
        return not (self.damaged or self.adopted or self.stray)

    def as_dict(self) -> dict:
        return {
            "source": self.source, "expected_points": self.expected_points, "found_points": self.found_points,
            "damaged_documents": sorted(self.damaged), "orphan_documents": sorted(self.adopted),
            "stray_points": len(self.stray),
        }  # fmt: skip


def compare(store: VectorStore, source: str, known: dict[str, LedgerEntry], *, full: bool = False) -> Reconciliation:
    """What disagrees between the ledger's `known` documents of `source` and the index.
    Without `full`, equal point counts are taken as agreement (one indexed count query)."""
    expected = sum(len(entry.point_ids) for entry in known.values())
    found = store.count({"source": source})
    result = Reconciliation(source, expected, found)
    if found == expected and not full:
        return result
    stored = {point.id: point.payload.get("document_id") for point in store.iter_points({"source": source})}
    owned: set[str] = set()
    for doc_id, entry in known.items():
        owned.update(entry.point_ids)
        if any(point not in stored for point in entry.point_ids):
            result.damaged.add(doc_id)
    for point, doc_id in stored.items():
        if point in owned:
            continue
        if isinstance(doc_id, str) and doc_id not in known:
            result.adopted.setdefault(doc_id, []).append(point)
        else:
            result.stray.append(point)
    return result


def repair(ledger: Ledger, result: Reconciliation, known: dict[str, LedgerEntry]) -> None:
    """Adopt orphan documents into the ledger (unknown content: the next comparison re-processes
    them), queue stray points for deletion, and mark damaged documents for re-processing.
    `known` is updated to match; the caller flushes the queued deletions."""
    adopted = [
        LedgerEntry(source=result.source, document_id=doc_id, content_hash="", version="", fingerprint="",
                    point_ids=sorted(points))
        for doc_id, points in result.adopted.items()
    ]  # fmt: skip
    invalidated = [known[doc_id].model_copy(update={"fingerprint": ""}) for doc_id in result.damaged]
    if adopted or invalidated or result.stray:
        ledger.commit(upserts=adopted + invalidated, stale_point_ids=result.stray)
    known.update({entry.document_id: entry for entry in adopted + invalidated})


def flush_pending_deletes(store: VectorStore, ledger: Ledger) -> None:
    """Delete the points the ledger queued for deletion, then forget them (a crash between
    the two repeats the delete, which is idempotent)."""
    pending = ledger.pending_deletes()
    if pending:
        store.delete(pending)
        failpoint("ingest.after_delete")
        ledger.clear_pending(pending)


def check(store: VectorStore, ledger: Ledger, *, repair_found: bool = False) -> list[Reconciliation]:
    """Every source's point ids against the ledger (`ragline check`): the sources the ledger
    knows and those only the index's payloads name. `repair_found` adopts orphans, deletes
    stray points and marks damaged documents, so the next ingest re-processes them. Needs
    neither parsers nor the model, so checking a store loads neither."""
    sources = {summary.source for summary in ledger.sources()}
    sources.update(p.payload.get("source") for p in store.iter_points())
    results = []
    for source in sorted(s for s in sources if isinstance(s, str)):
        known = ledger.documents(source)
        result = compare(store, source, known, full=True)
        if repair_found and not result.consistent:
            repair(ledger, result, known)
        results.append(result)
    if repair_found:
        flush_pending_deletes(store, ledger)
    return results
