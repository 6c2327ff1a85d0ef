"""A store's generation in the shared database. Every replica's ledger bumps it with its own
at each commit, readers change and deletion, so an answer one replica cached (in Redis) is
never served by another after the index they share changed."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update

from ragline.state.database import exclusive, open_engine

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
            row = store_generations.c
            if db.execute(update(store_generations).where(row.store == self.store).values(value=row.value + 1)).rowcount == 0:
                db.execute(insert(store_generations).values(store=self.store, value=1))

    def value(self) -> int:
        with exclusive(self._engine, _LOCK) as db:
            return db.scalar(select(store_generations.c.value).where(store_generations.c.store == self.store)) or 0

    def close(self) -> None:
        self._engine.dispose()
