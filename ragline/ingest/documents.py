"""What parsing produces, apart from the parser itself (which loads unstructured): the
chunker, the loader and connectors depend on these types without importing a parser."""

from __future__ import annotations

import re
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path

from pydantic import BaseModel

# Bump when parsing output changes for the same input, so stored chunks get rebuilt.
PARSER_FINGERPRINT = (
    f"ragline-parse/2;unstructured={package_version('unstructured')};pdfminer={package_version('pdfminer.six')}"
)
# A real word: two letters in a row. Rotated PDF text (arXiv stamps) comes out as letter
# salad like "n u J", which is no title or section heading.
_WORD = re.compile(r"[^\W\d_]{2,}")


def has_word(text: str) -> bool:
    return _WORD.search(text) is not None


class ParseError(ValueError):
    """A file that cannot be turned into text; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path = path  # a file path, or a URL / record id for documents that are not files
        self.reason = reason
        super().__init__(f"cannot parse {path}: {reason}")


class ParsedElement(BaseModel):
    text: str
    element_type: str
    page_number: int | None = None


class ParsedDocument(BaseModel):
    path: Path
    title: str | None
    elements: list[ParsedElement]
    # What the file says about itself, where its format has a place for it (PDF info).
    subject: str | None = None
    date: datetime | None = None


class RefusedDocument(ParseError):
    """Refused by its type or size before its content was read: while the document and the
    settings stay the same it is refused again from the ledger's record, without reading it."""
