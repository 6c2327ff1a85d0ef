"""A store's generation in the shared database. Every replica's ledger bumps it with its own
at each commit, readers change and deletion, so an answer one replica cached (in Redis) is
never served by another after the index they share changed."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, select

from ragline.state.database import exclusive, increment, open_engine, reading

_LOCK = "ragline store generations"
_metadata = MetaData()
store_generations = Table("store_generations", _metadata, Column("store", String(500), primary_key=True),
                          Column("value", Integer, nullable=False))  # fmt: skip


class SharedGeneration:
    def __init__(self, url: str, store: str):
        self.store = store
        self._engine = open_engine(url)
        with exclusive(self._engine, _LOCK) as db:
            _metadata.create_all(db)

    def bump(self) -> None:
        with exclusive(self._engine, _LOCK) as db:
            increment(db, store_generations.c.value, 1, store=self.store)

    def value(self) -> int:
        """Read on every cached-answer lookup: takes no lock."""
        with reading(self._engine) as db:
            return db.scalar(select(store_generations.c.value).where(store_generations.c.store == self.store)) or 0

    def close(self) -> None:
        self._engine.dispose()
