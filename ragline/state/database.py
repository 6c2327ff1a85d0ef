"""One engine per shared-state database, and transactions that exclude each other across
processes and hosts: `BEGIN IMMEDIATE` in SQLite, a transaction-scoped advisory lock in
PostgreSQL. The URL's password never appears in an error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from ragline.errors import SharedStateError

SQLITE_BUSY_TIMEOUT_S = 30


def open_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record) -> None:  # SQLAlchemy's recipe: we emit BEGIN
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine, "begin")
        def _one_writer(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4, pool_timeout=30)


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction no other holder of `name` runs beside (in any process or host)."""
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield connection
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise SharedStateError(
            f"the shared-state database {engine.url.render_as_string(hide_password=True)} "
            f"failed: {type(reason).__name__}: {_first_line(reason)}"
        ) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]
