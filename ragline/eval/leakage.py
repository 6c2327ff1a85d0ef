"""`leakage_rate`: the share of what an item's answer returned that the item's principal may
not read, and the gate that fails a run on any leak.

Access control is enforced inside the store; this checks it from the outside, per item,
against the readers each returned chunk carries (`metadata["readers"]`), so a backend that
drops the filter, a stale payload or a pipeline step that bypasses retrieval shows up as a
leak instead of a quietly better answer. A chunk without readers (ingested before access
control) is readable only by an unrestricted caller: returning it to anyone else is a leak.
The gate is absolute (`[gate] no_leaks`, on by default): a baseline that leaked too does not
excuse a candidate, so it is never a relative comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ragline.access.principals import READERS_FIELD, Viewer
from ragline.eval.scores import Score

LEAKAGE_METRIC = "leakage_rate"
LOWER_IS_BETTER = frozenset({LEAKAGE_METRIC})  # compared with the direction flipped, never given a floor
NO_PRINCIPAL = "the item names no principal: nothing to leak to"
_SHOWN_ITEMS, _SHOWN_CHUNKS = 20, 10


class Returned(Protocol):
    """A chunk an answer returned: a `Hit`, or a `Citation` (sources and citations)."""

    chunk_id: str
    metadata: Mapping[str, Any]


def leaked_chunks(viewer: Viewer, hits: Iterable[Returned], cited: Iterable[Returned]) -> tuple[list[str], int]:
    """The chunk ids among `hits` and `cited` (their union, by chunk id) that `viewer` may not
    read, in first-seen order, and how many distinct chunks there were. A chunk id seen twice
    leaks if either copy's readers exclude the viewer."""
    readable: dict[str, bool] = {}
    for chunk in [*hits, *cited]:
        ok = viewer.may_read(chunk.metadata.get(READERS_FIELD))
        readable[chunk.chunk_id] = readable.get(chunk.chunk_id, True) and ok
    return [chunk_id for chunk_id, ok in readable.items() if not ok], len(readable)


def leakage_rate(viewer: Viewer | None, hits: Iterable[Returned], cited: Iterable[Returned]) -> tuple[Score, list[str]]:
    """The score and the leaked chunk ids. `viewer` None (an item without a principal) is
    undefined, so it drops out of the mean instead of counting as 0; nothing returned is 0."""
    if viewer is None:
        return Score.undefined(NO_PRINCIPAL), []
    leaked, total = leaked_chunks(viewer, hits, cited)
    return Score.of(len(leaked) / total if total else 0.0), leaked


class Viewers:
    """Each item's `Viewer` from the store's `[access]` policy (groups resolved, admins
    bypassing), computed once per principal set for a whole run."""

    def __init__(self, policy):
        self.policy = policy
        self._seen: dict[tuple[str, ...], Viewer] = {}

    def of(self, principals: Sequence[str]) -> Viewer | None:
        """None for an item without principals; a resolver failure raises (not cached)."""
        if not principals:
            return None
        key = tuple(principals)
        if key not in self._seen:
            self._seen[key] = self.policy.viewer(list(principals))
        return self._seen[key]


def with_leakage(names: Sequence[str], principals: Iterable[Sequence[str]]) -> list[str]:
    """A suite's metric names, plus `leakage_rate` when any item has a principal: a suite
    that asks as someone is always checked for leaks, whether it lists the metric or not."""
    if LEAKAGE_METRIC not in names and any(principals):
        return [*names, LEAKAGE_METRIC]
    return list(names)


def leaks(items: Iterable[Any]) -> dict[str, Any]:
    """Stored item results (`ItemResult`) that leaked: item id -> the item."""
    found = {}
    for item in items:
        score = item.scores.get(LEAKAGE_METRIC)
        if score is not None and score.ok and score.value and score.value > 0:
            found[item.item_id] = item
    return found


def leak_reasons(items: Iterable[Any]) -> list[str]:
    """The gate's failure reason naming every leaking item, as whom, and the chunks it got;
    empty when nothing leaked. Prefixed with the metric name so reports file it under it."""
    leaking = leaks(items)
    if not leaking:
        return []
    parts = []
    for item_id, item in list(leaking.items())[:_SHOWN_ITEMS]:
        chunks = item.leaked_chunks[:_SHOWN_CHUNKS]
        more = len(item.leaked_chunks) - len(chunks)
        shown = ", ".join(chunks) + (f" and {more} more" if more > 0 else "")
        parts.append(f"item {item_id} (as {', '.join(item.principals)}) got {shown}")
    if len(leaking) > _SHOWN_ITEMS:
        parts.append(f"and {len(leaking) - _SHOWN_ITEMS} more items")
    reason = (f"{LEAKAGE_METRIC}: {len(leaking)} item(s) got chunks their principals may not read (gated at zero, "
              f"whatever the baseline): {'; '.join(parts)}")  # fmt: skip
    return [reason]
