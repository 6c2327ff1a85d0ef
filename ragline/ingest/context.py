"""Contextual chunk headers: what a chunk cannot say about itself.

Company corpora repeat themselves: the "Net sales" table of every quarter's 10-Q reads the
same, so does each version of a policy. A chunk's text alone cannot tell which filing it
belongs to, and neither the embedding nor BM25 sees the payload. So every chunk is indexed
(embedded and BM25-encoded) as a short header naming its document (title, subject, date)
and the section it sits in, then its text; its stored text stays as it was, so citations
and prompts quote the document, not the header.

The same facts become payload fields that retrieval filters on: `periods` (the reporting
periods the document's name and title state, `ragline.retrieval.periods`), `series`
(documents whose names differ only by period or version: "2023 Q2 AMZN.pdf" and "2023 Q3
AMZN.pdf") and `document_date` (when the document says it was made), so a question naming
"Q2 2023" or "the latest 10-Q" can be sent to the right filing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from ragline.ingest.documents import ParsedDocument, has_word
from ragline.retrieval.periods import DATE_FIELD, PERIODS_FIELD, SERIES_FIELD, document_periods, period_end, series_name

# A heading longer than this is a paragraph the classifier took for a title.
_MAX_SECTION_CHARS = 100


@dataclass(frozen=True)
class DocumentContext:
    name: str | None  # the file name, when the document has one
    title: str | None
    subject: str | None
    date: datetime | None
    periods: tuple[str, ...]
    series: str | None

    @classmethod
    def of(cls, doc: ParsedDocument, *, document_id: str) -> DocumentContext:
        path = PurePosixPath(document_id.replace("\\", "/"))
        name = path.name if path.suffix else None
        title = doc.title if doc.title and doc.title != path.stem else None
        series = series_name(str(path)) if name else None
        return cls(
            name=name, title=title, subject=doc.subject, date=doc.date,
            periods=tuple(document_periods(name or "", doc.title)),
            series=series or None,
        )  # fmt: skip

    def header(self, section: str | None) -> str:
        """One line naming the document, a second naming the section (when there is one).
        Not the file name: a copy or a rename keeps its vectors (the embedding cache is
        keyed by the indexed text), and the name's periods reach retrieval as payload."""
        parts = [p for p in (self.title, self.subject) if p]
        if self.date is not None:
            parts.append(f"dated {self.date:%Y-%m-%d}")
        lines = [" | ".join(parts)] if parts else []
        if section:
            lines.append(section)
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """`document_date` is the date the document states, else the end of the latest
        period its name states (what orders the versions of a series)."""
        fields: dict[str, Any] = {}
        if self.periods:
            fields[PERIODS_FIELD] = list(self.periods)
        if self.series:
            fields[SERIES_FIELD] = self.series
        date = self.date or period_end(list(self.periods))
        if date is not None:
            fields[DATE_FIELD] = date.isoformat()
        return fields


def section_titles(doc: ParsedDocument) -> list[str | None]:
    """For each element, the nearest heading at or before it (None before the first)."""
    current: str | None = None
    sections: list[str | None] = []
    for element in doc.elements:
        text = element.text.strip()
        if element.element_type == "Title" and len(text) <= _MAX_SECTION_CHARS and has_word(text):
            current = text
        sections.append(current)
    return sections


def chunk_section(section: str | None, text: str, context: DocumentContext) -> str | None:
    """The section worth repeating in a chunk's header: not when the chunk starts with it
    or it only repeats the document's title."""
    if not section or text.lstrip().startswith(section) or section in (context.title, context.name):
        return None
    return section
