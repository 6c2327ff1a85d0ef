"""Eval datasets: the items a suite asks about, and the corpus some formats bring along.

- `jsonl`: one object per line with `id`, `question`, and any of `reference_answer`,
  `relevant_document_ids` (a list, or an object of graded relevance), `label`, `metadata`,
  and who asks: `principal` ("user:ann") and/or `principals` (a list), merged. Such an item
  is answered as them and scored for `leakage_rate` (`ragline.eval.leakage`).
- `pubmedqa`: the PubMedQA JSON keyed by PMID (QUESTION, CONTEXTS, LONG_ANSWER,
  final_decision); each entry's contexts are its corpus document, the PMID its id.
- `beir`: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/*.tsv or qrels.tsv).

Every dataset has a content hash (file bytes, format and limit): a run records it, and a
comparison refuses runs of different data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from ragline.access.principals import AccessError, check_principals
from ragline.connectors.base import Connector, KnownDocument, SourceItem
from ragline.connectors.dataset import record_item

Format = Literal["jsonl", "pubmedqa", "beir"]
PUBMEDQA_LABELS = ("yes", "no", "maybe")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the entry."""


class EvalItem(BaseModel):
    id: str
    question: str
    reference_answer: str | None = None
    relevant_document_ids: dict[str, int] = Field(default_factory=dict, description="Document id -> graded relevance.")
    label: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    principals: list[str] = Field(
        default_factory=list, description="Who asks (sorted, no repeats); empty: unrestricted, as before access."
    )

    @field_validator("principals")
    @classmethod
    def _principals(cls, values: list[str]) -> list[str]:
        try:
            return check_principals(values)
        except AccessError as exc:
            raise ValueError(str(exc)) from None


class CorpusDocument(BaseModel):
    id: str
    title: str | None = None
    text: str


class Dataset(BaseModel):
    name: str
    format: Format
    content_hash: str
    items: list[EvalItem]
    corpus: list[CorpusDocument] = Field(default_factory=list, description="Documents to ingest first (pubmedqa).")
    corpus_file: Path | None = Field(None, description="A BEIR corpus.jsonl to ingest first.")
    labels: tuple[str, ...] = ()


def _hash(path: Path, fmt: str, limit: int | None) -> str:
    digest = hashlib.sha256(f"{fmt};limit={limit};".encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _graded(value: Any, where: str) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(doc): 1 for doc in value}
    if isinstance(value, dict):
        return {str(doc): int(grade) for doc, grade in value.items()}
    raise DatasetError(f"{where}: relevant_document_ids must be a list or an object of grades")


def _principals(record: dict[str, Any], where: str) -> list[str]:
    """`principal` and `principals` of a JSONL record, merged and checked (null: absent). An
    empty list is refused: it is more likely a bug than a wish to ask unrestricted."""
    single, many = record.pop("principal", None), record.pop("principals", None)
    values: list[Any] = [] if single is None else [single]
    if many is not None:
        if not isinstance(many, list):
            raise DatasetError(f'{where}: principals must be a list, e.g. ["user:ann"], not {many!r:.80}')
        if not many:
            raise DatasetError(f"{where}: principals is empty: name who asks, or leave it out to ask unrestricted")
        values += many
    try:
        return check_principals(values)
    except AccessError as exc:
        raise DatasetError(f"{where}: {exc}") from None


def _jsonl(path: Path, limit: int | None) -> list[EvalItem]:
    items: list[EvalItem] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):  # not at U+2028
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
            record["relevant_document_ids"] = _graded(record.get("relevant_document_ids"), where)
            record["principals"] = _principals(record, where)
            items.append(EvalItem.model_validate({**record, "id": str(record.get("id", ""))}))
        except (json.JSONDecodeError, ValidationError, AttributeError, TypeError) as exc:
            raise DatasetError(f"{where}: not an eval item ({exc})") from None
        if limit and len(items) >= limit:
            break
    return items


def _pubmedqa(path: Path, limit: int | None) -> tuple[list[EvalItem], list[CorpusDocument]]:
    try:
        entries: Mapping[str, Mapping[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not JSON ({exc})") from None
    items, corpus = [], []
    for pmid, entry in list(entries.items())[:limit]:
        try:
            contexts = entry["CONTEXTS"]
            items.append(EvalItem(
                id=str(pmid), question=entry["QUESTION"], reference_answer=entry.get("LONG_ANSWER"),
                relevant_document_ids={str(pmid): 1}, label=entry.get("final_decision"),
                metadata={"year": entry.get("YEAR")},
            ))  # fmt: skip
            corpus.append(CorpusDocument(id=str(pmid), title=entry["QUESTION"], text="\n\n".join(contexts)))
        except (KeyError, TypeError, ValidationError) as exc:
            raise DatasetError(f"{path}, entry {pmid}: not a PubMedQA entry ({exc})") from None
    return items, corpus


def _beir(folder: Path, limit: int | None) -> list[EvalItem]:
    from ragline.eval.retrieval import load_qrels, load_queries

    qrels_path = next((p for p in (folder / "qrels.tsv", folder / "qrels" / "test.tsv", folder / "qrels" / "dev.tsv")
                       if p.is_file()), None)  # fmt: skip
    if qrels_path is None:
        raise DatasetError(f"{folder}: no qrels.tsv (or qrels/test.tsv, qrels/dev.tsv)")
    queries, qrels = load_queries(folder / "queries.jsonl"), load_qrels(qrels_path)
    judged = [qid for qid in queries if qid in qrels][:limit]
    return [EvalItem(id=qid, question=queries[qid], relevant_document_ids=qrels[qid]) for qid in judged]


def load_dataset(path: Path, fmt: Format, *, limit: int | None = None, name: str | None = None) -> Dataset:
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    corpus: list[CorpusDocument] = []
    if fmt == "jsonl":
        items = _jsonl(path, limit)
    elif fmt == "pubmedqa":
        items, corpus = _pubmedqa(path, limit)
    else:
        items = _beir(path, limit)
    if not items:
        raise DatasetError(f"dataset {path} has no items")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"dataset {path}: item ids repeat ({sorted({i for i in ids if ids.count(i) > 1})[:5]})")
    return Dataset(
        name=name or path.stem, format=fmt, content_hash=_hash(path, fmt, limit), items=items, corpus=corpus,
        corpus_file=path / "corpus.jsonl" if fmt == "beir" and (path / "corpus.jsonl").is_file() else None,
        labels=PUBMEDQA_LABELS if fmt == "pubmedqa" else tuple(sorted({i.label for i in items if i.label})),
    )  # fmt: skip


class CorpusConnector(Connector):
    """A dataset's own corpus as a source, ingested incrementally like any other."""

    def __init__(self, dataset: Dataset, source: str):
        self.dataset, self._source = dataset, source
        self.errors: list[tuple[str, str]] = []
        self.keep: set[str] = set()

    @property
    def source(self) -> str:
        return self._source

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        for document in self.dataset.corpus:
            yield record_item(
                {"text": document.text, "title": document.title or ""}, document_id=document.id, source=self.source,
                version=None, text_fields=["text"], title_field="title", metadata_fields=[],
            )  # fmt: skip
