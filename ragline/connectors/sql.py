"""Rows of a SQL query as documents, through SQLAlchemy (any dialect it has a driver for).

With an updated-at column a run costs one light query (id, updated-at) plus full rows only
for new or changed ids, so a large, mostly unchanged table is cheap to re-sync. The URL's
password never leaves this module: `source`, errors and reprs show it as `***`.

With a readers column each row carries its readers (`ragline.connectors.acl.column_readers`).
They are not part of the content hash: a readers-only change updates the stored readers
without re-embedding. Incremental pulls skip unchanged rows by updated-at, which alone would
hide a readers change made without bumping updated-at (and would leave body-less items
without readers); so the light (id, updated-at) query reads the readers column too, for
every row, and a readers-only change is seen on the next run either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, CursorResult, TextClause, bindparam, create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ragline.connectors.acl import ReadersUnknown, column_readers
from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_text
from ragline.connectors.dataset import RecordError, record_id, record_item

_DUPLICATE = "duplicate id in the query result (the first row is used)"


def hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


class SQLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db or sqlite:///file.db.")
    query: str = Field(
        description="A SELECT; wrapped as a subquery for incremental pulls. Run through SQLAlchemy's text(), "
        "so a literal ':word' must be written '\\:word'.",
    )
    id_column: str
    text_columns: list[str] = Field(min_length=1, description="Joined with a blank line.")
    title_column: str | None = None
    metadata_columns: list[str] = Field(default_factory=list)
    updated_at_column: str | None = Field(None, description="Enables incremental pulls; becomes the version.")
    readers_column: str | None = Field(
        None, description='The row\'s readers: a JSON array string (\'["group:hr","user:ann"]\'), a native array '
        "(PostgreSQL text[]) or a comma-separated string; NULL: unknown (the source's readers, else owners, apply); "
        "'' or []: nobody but an admin. An unparseable value or a malformed principal fails the row, which keeps "
        "its previous version. Not hashed: a readers-only change updates payloads, nothing is re-embedded; with "
        "updated_at_column the light listing query reads this column for every row, so such a change is seen "
        "without an updated-at bump.",
    )
    name: str | None = Field(
        None, description="Names this query within the database (part of `source`); default: a hash of the query, "
        "so editing the query starts a new source.",
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Rows per fetch and ids per IN (...) lookup.")

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, hide_password(value) if name == "url" else value


def _jsonable(value: Any) -> Any:
    """Column values as payload-safe JSON values (timestamps as ISO strings)."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


class SQLConnector(Connector):
    def __init__(self, config: SQLConfig):
        try:
            url = make_url(config.url)
        except ArgumentError:
            raise ConnectorError("url is not a valid SQLAlchemy URL") from None
        self.config = config
        self.url = url.render_as_string(hide_password=True)
        self._password = url.password
        self._query = config.query.strip().rstrip(";").rstrip()
        try:
            # No pool: a run opens one connection and nothing lingers between runs.
            self._engine = create_engine(url, poolclass=NullPool)
        except (ArgumentError, ImportError) as exc:
            raise ConnectorError(f"{self.url}: {self._scrub(exc)}") from None
        self._quote = self._engine.dialect.identifier_preparer.quote
        self.errors: list[tuple[str, str]] = []
        self.keep: set[str] = set()
        self._duplicates: set[str] = set()

    @property
    def source(self) -> str:
        return f"sql:{self.url}#{self.config.name or sha256_text(self._query)[:12]}"

    def __repr__(self) -> str:
        return f"SQLConnector({self.source!r})"

    def _scrub(self, exc: BaseException) -> str:
        """The driver's message (not SQLAlchemy's, which repeats parameters), password masked."""
        detail = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
        detail = detail.strip()
        return detail.replace(self._password, "***") if self._password else detail

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Without an updated-at column (or a ledger) every row is read and hashed; with one,
        unchanged rows come back body-less and only new or changed rows are fetched."""
        self.errors, self.keep, self._duplicates = [], set(), set()
        try:
            with self._engine.connect() as connection:
                if self.config.updated_at_column and known:
                    yield from self._incremental(connection, known)
                else:
                    yield from self._items(self._execute(connection, text(self._query)), set())
        except SQLAlchemyError as exc:
            raise ConnectorError(f"{self.url}: {self._scrub(exc)}") from None

    def _execute(self, connection: Connection, statement: TextClause, **params: Any) -> CursorResult:
        # yield_per streams: a server-side cursor where the dialect has one (PostgreSQL).
        return connection.execute(statement.execution_options(yield_per=self.config.batch_size), params)

    def _duplicate(self, document_id: str) -> None:
        if document_id not in self._duplicates:
            self._duplicates.add(document_id)
            self.errors.append((document_id, _DUPLICATE))

    def _incremental(self, connection: Connection, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        id_column = f"q.{self._quote(self.config.id_column)}"
        light_columns = [id_column, f"q.{self._quote(self.config.updated_at_column)}"]
        if self.config.readers_column:  # read for every row: a readers-only change needs no updated-at bump
            light_columns.append(f"q.{self._quote(self.config.readers_column)}")
        light = text(f"SELECT {', '.join(light_columns)} FROM ({self._query}) AS q")
        full = text(f"SELECT * FROM ({self._query}) AS q WHERE {id_column} IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        listed: set[str] = set()
        fetched: set[str] = set()
        changed: list[Any] = []
        for number, row in enumerate(self._execute(connection, light), start=1):
            raw_id, updated_at = row[0], row[1]
            try:
                document_id = record_id(_jsonable(raw_id))
            except RecordError as exc:
                self.errors.append((f"row {number}", str(exc)))
                continue
            if document_id in listed:
                self._duplicate(document_id)
                continue
            listed.add(document_id)
            previous = known.get(document_id)
            version = _version(updated_at)
            if previous and version is not None and previous.version == version:
                try:
                    readers = self._readers(row[2]) if self.config.readers_column else None
                except ReadersUnknown as exc:
                    self._unreadable(document_id, exc)
                    continue
                yield SourceItem(
                    document_id=document_id, source=self.source, version=version, content_hash=previous.content_hash,
                    readers=readers,
                )
                continue
            changed.append(raw_id)
            if len(changed) >= self.config.batch_size:
                yield from self._items(self._execute(connection, full, ids=changed), fetched)
                changed = []
        if changed:
            yield from self._items(self._execute(connection, full, ids=changed), fetched)

    def _check_columns(self, columns: Sequence[str]) -> None:
        config = self.config
        wanted = [config.id_column, *config.text_columns, config.title_column, *config.metadata_columns,
                  config.updated_at_column, config.readers_column]
        absent = [column for column in wanted if column is not None and column not in columns]
        if absent:
            raise ConnectorError(f"{self.url}: the query has no column(s) {absent}; it returns {list(columns)}")

    def _items(self, result: CursorResult, seen: set[str]) -> Iterator[SourceItem]:
        """Full rows to items; a bad row is an error for that row, a bad query for the run."""
        self._check_columns(list(result.keys()))
        config = self.config
        for number, row in enumerate(result.mappings(), start=1):
            try:
                document_id = record_id(_jsonable(row[config.id_column]))
            except RecordError as exc:
                self.errors.append((f"row {number}", str(exc)))
                continue
            if document_id in seen:
                self._duplicate(document_id)
                continue
            seen.add(document_id)
            version = _version(row[config.updated_at_column]) if config.updated_at_column else None
            try:
                readers = self._readers(row[config.readers_column]) if config.readers_column else None
                item = record_item(
                    {key: _jsonable(value) for key, value in row.items()}, document_id=document_id,
                    source=self.source, version=version, text_fields=config.text_columns,
                    title_field=config.title_column, metadata_fields=config.metadata_columns,
                )
            except (RecordError, ReadersUnknown) as exc:
                self._unreadable(document_id, exc)
                continue
            yield item.model_copy(update={"readers": readers}) if readers is not None else item

    def _readers(self, value: Any) -> list[str] | None:
        try:
            return column_readers(value)
        except ReadersUnknown as exc:
            raise ReadersUnknown(f"readers column {self.config.readers_column!r}: {exc}") from None

    def _unreadable(self, document_id: str, exc: Exception) -> None:
        """A row that is there but cannot be used this run: failed, and kept as it was."""
        self.errors.append((document_id, str(exc)))
        self.keep.add(document_id)


def _version(updated_at: Any) -> str | None:
    """ISO string of the updated-at value; None (always re-read) when the row has none."""
    return None if updated_at is None else str(_jsonable(updated_at))
