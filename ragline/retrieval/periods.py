"""Reporting periods named in text, as keys shared by documents and questions.

A document named "2023 Q2 AMZN.pdf" gets the keys `2023-Q2` and `2023`; a question that
says "Q2 2023", "2023 Q2", "the second quarter of 2023" or "Q2 FY23" asks for `2023-Q2`,
and "fiscal 2023" or "FY2023" for `2023`. Only explicit quarter and fiscal-year forms
count: a plain year in a question ("since 2021") or a calendar date ("ended June 30,
2023") says nothing reliable about which filing is meant (Apple's fiscal Q1 2023 ends in
December 2022), so documents take their periods from their own name and title.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

# Payload keys a chunk carries when its document states them (`ragline.ingest.context`).
PERIODS_FIELD = "periods"
SERIES_FIELD = "series"
DATE_FIELD = "document_date"

_YEAR = r"((?:19|20)\d{2})"
_SHORT_YEAR = r"((?:19|20)?\d{2})"
_QUARTER_THEN_YEAR = re.compile(rf"\bq([1-4])[\s\-/']*(?:fy[\s\-']*)?{_SHORT_YEAR}\b", re.IGNORECASE)
_YEAR_THEN_QUARTER = re.compile(rf"\b(?:fy[\s\-']*)?{_YEAR}[\s\-/]*q([1-4])\b", re.IGNORECASE)
_ORDINAL_QUARTER = re.compile(
    rf"\b(first|second|third|fourth|1st|2nd|3rd|4th)[\s\-]+(?:fiscal[\s\-]+)?quarter,?\s+(?:of\s+)?"
    rf"(?:(?:the\s+)?fiscal\s+(?:year\s+)?)?{_YEAR}\b",
    re.IGNORECASE,
)
_FISCAL_YEAR = re.compile(rf"\b(?:fy[\s\-']*{_SHORT_YEAR}|fiscal\s+(?:year\s+)?{_YEAR})\b", re.IGNORECASE)
_PLAIN_YEAR = re.compile(rf"(?<!\d){_YEAR}(?!\d)")
_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}

# "the latest 10-Q", "most recent filing": the newest document of its kind is meant...
_LATEST = re.compile(r"\b(latest|most\s+recent|newest|most\s+current)\b", re.IGNORECASE)
# ...unless the question reaches back in time, when older versions are part of the answer.
_ACROSS_TIME = re.compile(
    r"\b(previous|prior|preceding|earlier|over\s+time|trends?|since|history|historical|"
    r"year[\s\-]+over[\s\-]+year|quarter[\s\-]+over[\s\-]+quarter|"
    r"across\s+(?:the\s+)?(?:\w+\s+)?(?:quarters|periods|years|filings|reports|versions))\b",
    re.IGNORECASE,
)


def _year(text: str) -> str:
    return text if len(text) == 4 else f"20{text}"


def _quarters(text: str) -> set[str]:
    text = text.replace("_", " ")
    found = {f"{_year(y)}-Q{q}" for q, y in _QUARTER_THEN_YEAR.findall(text)}
    found |= {f"{y}-Q{q}" for y, q in _YEAR_THEN_QUARTER.findall(text)}
    found |= {f"{y}-Q{_ORDINALS[o.lower()]}" for o, y in _ORDINAL_QUARTER.findall(text)}
    return found


def _fiscal_years(text: str) -> set[str]:
    return {_year(short or full) for short, full in _FISCAL_YEAR.findall(text.replace("_", " "))}


def question_periods(question: str) -> list[str]:
    """The period keys a question names explicitly (quarters, fiscal years), sorted; a
    year only when none of its quarters is named ("Q3 FY23" is 2023-Q3, not all of 2023)."""
    quarters = _quarters(question)
    named = {key.split("-")[0] for key in quarters}
    return sorted(quarters | (_fiscal_years(question) - named))


def document_periods(name: str, title: str | None) -> list[str]:
    """A document's period keys from its name and title: every quarter with its year, and
    fiscal years; a plain year counts in the name ("handbook-2023.pdf"), not in a title."""
    texts = [name, title or ""]
    quarters = set().union(*(_quarters(t) for t in texts))
    years = {key.split("-")[0] for key in quarters} | set().union(*(_fiscal_years(t) for t in texts))
    years |= set(_PLAIN_YEAR.findall(name))
    return sorted(quarters | years)


def period_end(keys: list[str]) -> datetime | None:
    """The last day of the latest period among `keys` (quarters first: a quarter's key
    comes with its year's), the order of documents that state no date of their own."""
    quarters = [key for key in keys if "-Q" in key]
    ends = []
    for key in quarters or keys:
        year, _, quarter = key.partition("-Q")
        month = 3 * int(quarter) if quarter else 12
        ends.append(datetime(int(year) + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc) - timedelta(days=1))
    return max(ends, default=None)


def asks_for_latest(question: str) -> bool:
    """Whether the question means the newest version of a document ("the latest 10-Q")
    and only that one: it names no period and does not look back across time."""
    return bool(_LATEST.search(question)) and not _ACROSS_TIME.search(question) and not question_periods(question)


def series_name(name: str) -> str:
    """What stays of a document's name without its periods, dates and version numbers:
    "2023 Q2 AMZN.pdf" and "2023 Q3 AMZN.pdf" are versions of one series, "amzn"."""
    stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
    stem = _QUARTER_THEN_YEAR.sub(" ", _YEAR_THEN_QUARTER.sub(" ", stem.replace("_", " ")))
    words = re.findall(r"[^\W\d_]+", _FISCAL_YEAR.sub(" ", stem).lower())
    return " ".join(word for word in words if len(word) > 1 and word not in ("rev", "version", "draft", "final"))
