"""Document targeting: send a question to the documents it names before ranking chunks.

Near-identical documents (the same report each quarter, a policy in several versions)
differ in what their chunks rarely say: which period or version they are. When the
question says it, the first stage searches there:

* a question naming periods ("In Amazon's Q2 2023 10-Q ...") searches the documents whose
  name or title states one of them (`periods` payload);
* a question asking for the latest version ("the most recent 10-Q"), without looking back
  across time, searches the newest document (by `document_date`) of each series its best
  hits come from: series are documents whose names differ only by period or version.

Both are filters inside the engine query, so access control and every search mode apply
unchanged. When targeting finds fewer than `top_k` hits, the untargeted search fills the
rest (after them); when the targeted documents do not exist, the search is untargeted.
A caller's own filter on the same field wins: targeting then stays out of the way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ragline.retrieval.periods import DATE_FIELD, PERIODS_FIELD, SERIES_FIELD, asks_for_latest, question_periods
from ragline.retrieval.store import Filters, ScoredPoint

Search = Callable[[Filters | None, int], list[ScoredPoint]]
# The best hits whose series "latest" resolves: the question is about what ranks first.
LATEST_FROM_HITS = 10
# Newer versions looked up per series, at most (each lookup is one filtered search).
MAX_NEWER_STEPS = 32


def targeted_search(question: str, filters: Filters | None, top_k: int, search: Search) -> list[ScoredPoint]:
    """`search(filters, top_k)` aimed at the documents `question` names, as described above."""
    filters = dict(filters or {})
    periods = question_periods(question)
    if periods and PERIODS_FIELD not in filters:
        return _filled(
            search({**filters, PERIODS_FIELD: periods}, top_k), lambda: search(filters or None, top_k), top_k
        )
    if asks_for_latest(question) and "document_id" not in filters:
        untargeted = search(filters or None, max(top_k, LATEST_FROM_HITS))
        newest = newest_documents(untargeted[:LATEST_FROM_HITS], filters, search)
        if not newest:
            return untargeted[:top_k]
        return _filled(search({**filters, "document_id": newest}, top_k), lambda: untargeted, top_k)
    return search(filters or None, top_k)


def newest_documents(hits: list[ScoredPoint], filters: Filters, search: Search) -> list[str]:
    """The newest document of each dated series among `hits` (found in the store, not only
    among the hits), plus the hits' documents that belong to no dated series; [] when no
    hit has a dated series (nothing to resolve "latest" against)."""
    newest: dict[str, tuple[datetime, str]] = {}
    undated: set[str] = set()
    for hit in hits:
        series, date = hit.payload.get(SERIES_FIELD), _date(hit.payload.get(DATE_FIELD))
        document = hit.payload["document_id"]
        if not isinstance(series, str) or date is None:
            undated.add(document)
        elif series not in newest or date > newest[series][0]:
            newest[series] = (date, document)
    if not newest:
        return []
    for series, (date, document) in list(newest.items()):
        for _ in range(MAX_NEWER_STEPS):
            newer = search({**filters, SERIES_FIELD: series, DATE_FIELD: {"gt": date.isoformat()}}, 1)
            found = _date(newer[0].payload.get(DATE_FIELD)) if newer else None
            if found is None or found <= date:
                break
            date, document = found, newer[0].payload["document_id"]
        newest[series] = (date, document)
    return sorted({document for _, document in newest.values()} | undated)


def _filled(targeted: list[ScoredPoint], untargeted: Callable[[], list[ScoredPoint]], top_k: int) -> list[ScoredPoint]:
    if not targeted:
        return untargeted()
    if len(targeted) >= top_k:
        return targeted
    seen = {point.id for point in targeted}
    return targeted + [point for point in untargeted() if point.id not in seen][: top_k - len(targeted)]


def _date(value: Any) -> datetime | None:
    """A payload date (ISO 8601); None for anything else (a user's free-form metadata)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
