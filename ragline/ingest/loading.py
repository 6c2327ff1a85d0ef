"""Turn a connector's `SourceItem` into a `ParsedDocument`, whatever carries its body."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from pydantic import BaseModel

from ragline.connectors.base import OPEN_NO_FOLLOW, SourceItem
from ragline.ingest.documents import RefusedDocument
from ragline.ingest.parsing import SUPPORTED_EXTENSIONS, ParsedDocument, ParsedElement, ParseError, parse_file
from ragline.text import path_text

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _size_check(item: SourceItem, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise RefusedDocument(
            item.path or item.document_id,
            f"too large ({size:,} bytes; the limit is ingest.max_document_bytes = {max_bytes:,})",
        )


def _parse_checked_file(item: SourceItem, max_bytes: int) -> ParsedDocument:
    """Parse exactly the file the connector checked: open `path` without following a link,
    confirm it is the same (device, inode), and parse a copy read from that descriptor, so
    no swap of the path between listing and parsing can feed the parser another file."""
    assert item.path is not None and item.identity is not None
    if item.path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        return parse_file(item.path)  # refused by its type before anything is opened
    try:
        descriptor = os.open(item.path, OPEN_NO_FOLLOW)
    except OSError as exc:
        raise ParseError(path_text(item.path), f"cannot open: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as source:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != item.identity:
            raise ParseError(path_text(item.path), "changed while being read (replaced, or swapped for a link); read again next run")
        _size_check(item, info.st_size, max_bytes)
        with tempfile.TemporaryDirectory(prefix="ragline-") as folder:
            copy = Path(folder) / path_text(item.path.name)  # parsers want text names
            with copy.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            try:
                parsed = parse_file(copy)
            except ParseError as exc:
                raise type(exc)(path_text(item.path), exc.reason) from None
    return parsed.model_copy(update={"path": item.path})


def _parse_bytes(item: SourceItem) -> ParsedDocument:
    """Parsers read files, so bytes go through a temporary file named like the document."""
    name = Path(item.filename or "document").name
    with tempfile.TemporaryDirectory(prefix="ragline-") as folder:
        path = Path(folder) / name
        path.write_bytes(item.content or b"")
        try:
            parsed = parse_file(path)
        except ParseError as exc:
            raise ParseError(item.document_id, exc.reason) from None
    return parsed.model_copy(update={"path": Path(item.document_id)})


def _parse_text(item: SourceItem) -> ParsedDocument:
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(item.text or "") if p.strip()]
    if not paragraphs:
        raise ParseError(item.document_id, "empty document (no text)")
    return ParsedDocument(
        path=Path(item.document_id),
        title=item.title,
        elements=[ParsedElement(text=p, element_type="NarrativeText", page_number=None) for p in paragraphs],
    )


def load_item(item: SourceItem, *, max_bytes: int) -> ParsedDocument:
    """Parse the item's body; raise `ParseError` naming the document and the reason."""
    if item.path is not None and item.identity is not None:
        parsed = _parse_checked_file(item, max_bytes)
    elif item.path is not None:
        _size_check(item, item.path.stat().st_size, max_bytes)
        parsed = parse_file(item.path)
    elif item.content is not None:
        _size_check(item, len(item.content), max_bytes)
        parsed = _parse_bytes(item)
    elif item.text is not None:
        _size_check(item, len(item.text.encode("utf-8")), max_bytes)
        parsed = _parse_text(item)
    else:
        raise ParseError(item.document_id, "the connector gave no content for a changed document")
    return parsed.model_copy(update={"title": item.title}) if item.title else parsed


class ParseOutcome(BaseModel):
    """What parsing made of one item, as a value: it crosses from a parser process intact,
    where an exception (a parser's own, say) might not unpickle."""

    parsed: ParsedDocument | None = None
    reason: str | None = None  # why there is no `parsed`
    refused: bool = False  # by type or size: refused again from the ledger while unchanged


def parse_item(item: SourceItem, *, max_bytes: int) -> ParseOutcome:
    """`load_item` with every failure as a reason: one bad document costs that document."""
    try:
        return ParseOutcome(parsed=load_item(item, max_bytes=max_bytes))
    except RefusedDocument as exc:
        return ParseOutcome(reason=exc.reason, refused=True)
    except ParseError as exc:
        return ParseOutcome(reason=exc.reason)
    except Exception as exc:  # a parser bug must cost one document, not the run
        return ParseOutcome(reason=f"{type(exc).__name__}: {exc}")
