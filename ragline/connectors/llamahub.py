"""Any llama-index reader (LlamaHub: Notion, Slack, S3, ...) as a ragline source.

Readers give no cheap change marker, so every run loads everything and the content hash
decides what is re-ingested. Ids must be stable across runs, but llama-index gives a
`Document` a fresh uuid4 unless the reader sets one, so the id is, in order:

1. the reader's own id (`doc.id_` set explicitly and not a uuid4 string);
2. the first of the metadata keys "file_path", "url", "source", "id";
3. the reader's explicit uuid4 id;
4. "sha256:<hash of the text>" (then an edited document is a deletion plus an addition).

Several documents with the same id (a PDF reader's pages share one file_path) become
`id`, `id#2`, `id#3`, ... in reading order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_text

ID_METADATA_KEYS = ("file_path", "url", "source", "id")
TITLE_METADATA_KEYS = ("title", "file_name")


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def document_id(doc: Document) -> str:
    """The stable id of a llama-index document (see the module docstring for the order)."""
    explicit = doc.id_ if "id_" in doc.model_fields_set else None
    if explicit and not _is_uuid4(explicit):
        return explicit
    for key in ID_METADATA_KEYS:
        value = doc.metadata.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return explicit or f"sha256:{sha256_text(doc.text)}"


class LlamaHubConnector(Connector):
    def __init__(self, reader: BaseReader, *, source: str, load_kwargs: dict[str, Any] | None = None):
        self.reader = reader
        self.name = source
        self.load_kwargs = load_kwargs or {}

    @property
    def source(self) -> str:
        return f"llamahub:{self.name}"

    def _documents(self) -> Iterable[Document]:
        # BaseReader.lazy_load_data only raises NotImplementedError: use it when overridden.
        if getattr(type(self.reader), "lazy_load_data", BaseReader.lazy_load_data) is not BaseReader.lazy_load_data:
            return self.reader.lazy_load_data(**self.load_kwargs)
        return self.reader.load_data(**self.load_kwargs)

    def _item(self, doc: Document, document_id: str) -> SourceItem:
        metadata = {str(key): value for key, value in doc.metadata.items() if _jsonable(value)}
        titles = (metadata.get(key) for key in TITLE_METADATA_KEYS)
        title = next((t for t in titles if isinstance(t, str) and t), None)
        text = doc.text
        content_hash = sha256_text(
            json.dumps({"text": text, "title": title, "metadata": metadata}, sort_keys=True, ensure_ascii=False)
        )
        return SourceItem(
            document_id=document_id, source=self.source, version=content_hash, content_hash=content_hash,
            text=text, title=title, metadata=metadata,
        )

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Every document the reader returns; a reader that fails fails the run (deleting nothing)."""
        counts: dict[str, int] = {}
        try:
            for doc in self._documents():
                base = document_id(doc)
                counts[base] = counts.get(base, 0) + 1
                yield self._item(doc, base if counts[base] == 1 else f"{base}#{counts[base]}")
        except Exception as exc:  # any reader error means the source could not be listed
            raise ConnectorError(f"{self.source}: {type(self.reader).__name__} failed: {exc}") from exc
