"""The start-up self-test: does the store really apply the readers filter?

Filters that a backend silently ignores are a known leak class (a client that drops an
unknown filter field, a server version that ignores a condition). Before the first search
of a store with access control enabled, two canary points with the same text and vector,
readable by two principals whose names differ by one character, go into a scratch
collection of the same kind of store; a restricted search in every mode (dense, sparse,
hybrid) must return exactly the caller's own canary. Otherwise nothing is served.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ragline.access.principals import READERS_FIELD, AccessError
from ragline.retrieval.store import StoredPoint, VectorStore

CANARY_READERS = ("user:ragline-canary-1", "user:ragline-canary-2")
_TEXT = "ragline access control canary"
_VECTOR = [1.0, 0.0, 0.0, 0.0]


class FilterNotEnforced(AccessError):
    """The store returned a point its readers filter excludes: it cannot be trusted to enforce access."""


def check_filters_enforced(scratch: Callable[[], VectorStore]) -> None:
    """Raise `FilterNotEnforced` unless a readers-filtered search of a fresh scratch store
    (`scratch()`, closed and discarded here) returns only the caller's canary."""
    store = scratch()
    try:
        store.ensure_collection(len(_VECTOR))
        ids = {reader: str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragline-canary/{reader}")) for reader in CANARY_READERS}
        store.upsert([
            StoredPoint(id=ids[reader], vector=_VECTOR, payload={"text": _TEXT, "document_id": reader, READERS_FIELD: [reader]})
            for reader in CANARY_READERS
        ])  # fmt: skip
        for mode in ("dense", "sparse", "hybrid"):
            for reader in CANARY_READERS:
                found = {p.id for p in store.search(_VECTOR, 10, text=_TEXT, mode=mode, readers={reader})}
                if found != {ids[reader]}:
                    raise FilterNotEnforced(
                        f"access self-test failed: a {mode} search of {store!r} restricted to {reader!r} returned "
                        f"{len(found)} canary point(s) instead of only its own: this store does not apply the readers "
                        "filter, so ragline refuses to serve it with [access] enabled (check the Qdrant server and "
                        "client versions)"
                    )
    finally:
        store.close()
