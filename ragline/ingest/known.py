"""What a connector may skip: the ledger's view of the documents it knows, per lookup."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ragline.connectors.base import KnownDocument
from ragline.ingest.ledger import LedgerEntry, Refusal


class KnownView(Mapping[str, KnownDocument]):
    """The connector's view of what it may skip, built per lookup: most connectors look up
    few documents or none, so an unchanged re-run costs little more than reading the source.
    Documents made with another fingerprint are left out: they must be re-read in full (no
    conditional requests for them)."""

    def __init__(self, known: dict[str, LedgerEntry], fingerprint: str, refused: dict[str, Refusal]):
        self._known, self._fingerprint, self._refused = known, fingerprint, refused

    def __getitem__(self, doc_id: str) -> KnownDocument:
        if doc_id in self._refused:  # what the last run saw of a document it then refused
            refusal = self._refused[doc_id]
            return KnownDocument(version=refusal.version, content_hash=refusal.content_hash)
        entry = self._known[doc_id]
        if entry.fingerprint != self._fingerprint:
            raise KeyError(doc_id)
        return KnownDocument(version=entry.version, content_hash=entry.content_hash)

    def __iter__(self) -> Iterator[str]:
        ok = (doc_id for doc_id, e in self._known.items() if e.fingerprint == self._fingerprint)
        return iter(dict.fromkeys([*ok, *self._refused]))

    def __len__(self) -> int:
        return sum(1 for _ in self)
