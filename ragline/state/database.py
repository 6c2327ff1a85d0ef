"""An engine for a shared-state database, and its two kinds of transaction: `exclusive`,
which no other holder of the same name runs beside in any process or host (`BEGIN
IMMEDIATE` in SQLite, a transaction-scoped advisory lock in PostgreSQL), for read-modify-
write; and `reading`, which takes no lock, for reads. The URL's password never appears in
an error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Column, Connection, Engine, Table, create_engine, event, insert, make_url, text, update
from sqlalchemy.exc import SQLAlchemyError

from ragline.errors import SharedStateError

SQLITE_BUSY_TIMEOUT_S = 30
_READ = "ragline_read"  # execution option: this transaction only reads


def open_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record) -> None:  # SQLAlchemy's recipe: we emit BEGIN
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:  # writers one at a time; readers beside them (WAL)
            connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(_READ) else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4, pool_timeout=30)


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction no other holder of `name` runs beside (in any process or host)."""
    with _failures(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield connection


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads: it waits for no lock and holds none."""
    with _failures(engine), engine.connect() as connection:
        connection.execution_options(**{_READ: True})
        with connection.begin():
            yield connection


def increment(db: Connection, column: Column, by: float, **key: object) -> None:
    """Add `by` to `column` in the row of `key`, creating the row at `by`. Only inside
    `exclusive`, whose lock makes the update-else-insert safe across processes."""
    table: Table = column.table
    where = [table.c[name] == value for name, value in key.items()]
    if db.execute(update(table).where(*where).values({column.name: column + by})).rowcount == 0:
        db.execute(insert(table).values({**key, column.name: by}))


@contextmanager
def _failures(engine: Engine) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        detail = f"{type(reason).__name__}: {(str(reason).strip().splitlines() or [''])[0][:300]}"
        raise SharedStateError(
            f"the shared-state database {engine.url.render_as_string(hide_password=True)} failed: {detail}", detail
        ) from None
