"""Record files: one document per JSONL line or CSV row (BEIR's `corpus.jsonl` included).

A bad record costs that record, not the run: it lands in `connector.errors` as
`(document id or "line N", reason)` and, when its id is readable, in `connector.keep`
so the version ingested last time survives until the record is fixed. Only a file that
cannot be read at all raises `ConnectorError`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_text

AUTO_ID_FIELDS = ("_id", "id")
_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Python's csv refuses fields over 128 KiB by default; whole documents are often longer.
_CSV_FIELD_LIMIT = 1 << 30


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    format: Literal["jsonl", "csv"] | None = Field(None, description="None: from the extension (.jsonl/.ndjson/.csv).")
    id_field: str | None = Field(None, description='None: "_id" (BEIR) when a record has it, else "id".')
    text_fields: list[str] = Field(
        default_factory=lambda: ["title", "text"], min_length=1,
        description="Joined with a blank line; every record must have them (null counts as empty).",
    )
    title_field: str | None = Field("title", description="Copied to the item's title when the record has it.")
    metadata_fields: list[str] = Field(default_factory=list, description="Copied into the item's metadata if present.")


class RecordError(ValueError):
    """One record cannot become a document; the message is the reason."""


def record_id(value: Any) -> str:
    """Ids are strings or integers; anything else (null, floats, objects) is ambiguous."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise RecordError(f"id must be a non-empty string or an integer, got {value!r}")
    return str(value)


def _text(record: Mapping[str, Any], field: str) -> str:
    value = record[field]
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"field {field!r} is not text ({type(value).__name__})")


def record_item(
    record: Mapping[str, Any], *, document_id: str, source: str, version: str | None,
    text_fields: Sequence[str], title_field: str | None, metadata_fields: Sequence[str],
) -> SourceItem:
    """The item for one record (shared with the SQL connector). The hash covers text, title
    and metadata, so a metadata-only change re-ingests; `version` defaults to that hash."""
    missing = [field for field in text_fields if field not in record]
    if missing:
        raise RecordError(f"missing text field(s) {', '.join(map(repr, missing))}")
    text = "\n\n".join(part for part in (_text(record, f).strip() for f in text_fields) if part)
    title = (_text(record, title_field).strip() or None) if title_field and title_field in record else None
    metadata = {field: record[field] for field in metadata_fields if field in record}
    content_hash = sha256_text(
        json.dumps({"text": text, "title": title, "metadata": metadata}, sort_keys=True, ensure_ascii=False)
    )
    return SourceItem(
        document_id=document_id, source=source, version=version or content_hash, content_hash=content_hash,
        text=text, title=title, metadata=metadata,
    )


class DatasetConnector(Connector):
    def __init__(self, config: DatasetConfig):
        path = config.path.expanduser()
        if not path.is_file():
            raise ConnectorError(f"dataset file {config.path} does not exist")
        self.config = config
        self.path = path.resolve()
        self.format = config.format or _FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ConnectorError(f"cannot tell the format of {self.path.name}: set format to 'jsonl' or 'csv'")
        self.errors: list[tuple[str, str]] = []
        self.keep: set[str] = set()

    @property
    def source(self) -> str:
        return f"dataset:{self.path}"

    def _jsonl(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """(line number, record) or (line number, reason the line is not a record)."""
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                except UnicodeDecodeError as exc:
                    yield number, f"not UTF-8: {exc.reason}"
                    continue
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"invalid JSON: {exc.msg} (column {exc.colno})"
                    continue
                yield number, record if isinstance(record, dict) else f"not a JSON object: {type(record).__name__}"

    def _csv(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            wanted = [*self.config.text_fields, *([self.config.id_field] if self.config.id_field else [])]
            absent = [column for column in wanted if column not in header]
            if not self.config.id_field and not any(column in header for column in AUTO_ID_FIELDS):
                absent.append(" or ".join(AUTO_ID_FIELDS))
            if absent:
                raise ConnectorError(f"{self.path}: no column(s) {', '.join(absent)} in the header {header}")
            for row in reader:
                extra = row.pop(None, None)  # DictReader's key for cells beyond the header
                yield reader.line_num, f"{len(extra)} more cell(s) than the header" if extra else row

    def _records(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        try:
            yield from self._jsonl() if self.format == "jsonl" else self._csv()
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConnectorError(f"cannot read {self.path}: {exc}") from exc

    def _id_of(self, record: Mapping[str, Any]) -> str:
        field = self.config.id_field or next((f for f in AUTO_ID_FIELDS if f in record), None)
        if field is None:
            raise RecordError(f"no id field ({' or '.join(map(repr, AUTO_ID_FIELDS))})")
        if field not in record:
            raise RecordError(f"no id field {field!r}")
        return record_id(record[field])

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Every record, re-read and re-hashed each run: the whole file is read anyway, and
        the hash, not the version, decides whether the record is re-ingested."""
        self.errors, self.keep = [], set()
        first_line: dict[str, int] = {}
        for number, record in self._records():
            where = f"line {number}"
            if isinstance(record, str):
                self.errors.append((where, record))
                continue
            try:
                document_id = self._id_of(record)
            except RecordError as exc:
                self.errors.append((where, str(exc)))
                continue
            if document_id in first_line:
                self.errors.append((document_id, f"duplicate id on {where} (first on line {first_line[document_id]})"))
                continue
            first_line[document_id] = number
            try:
                yield record_item(
                    record, document_id=document_id, source=self.source, version=None,
                    text_fields=self.config.text_fields, title_field=self.config.title_field,
                    metadata_fields=self.config.metadata_fields,
                )
            except RecordError as exc:
                self.errors.append((document_id, f"{where}: {exc}"))
                self.keep.add(document_id)
