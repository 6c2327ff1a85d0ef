"""`ItemsConnector`: documents given as text with their readers, for access-control tests;
`TOKEN` finds the `docid-N` markers their texts carry (a scripted model echoes them)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ragline.connectors.base import Connector, KnownDocument, SourceItem, sha256_text

TOKEN = re.compile(r"docid-\d+")


class ItemsConnector(Connector):
    """Documents given as text with their readers (None: unknown at the source)."""

    def __init__(self, name: str, documents: Mapping[str, tuple[str, list[str] | None]], metadata: dict | None = None):
        self.name, self.documents, self.metadata = name, dict(documents), metadata or {}
        self.errors, self.keep = [], set()

    @property
    def source(self) -> str:
        return f"test:{self.name}"

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        for doc_id, (text, readers) in self.documents.items():
            yield SourceItem(document_id=doc_id, source=self.source, version=sha256_text(text),
                             content_hash=sha256_text(text), text=text, readers=readers, metadata=self.metadata)  # fmt: skip
