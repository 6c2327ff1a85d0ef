"""The day budget's spend and in-flight holds, in a database every process sharing the
budget reaches: SQLite in the store directory (one machine), or PostgreSQL (`[shared_state]`,
every replica of a deployment).

A hold is a lease: it carries the process space it was taken in (host, boot, pid namespace),
the pid, and when it expires. A hold whose process is visibly gone (same process space, pid
not running) is dropped at once, and one of a live process here never; one from another
machine is dropped when its lease runs out, so a replica that vanished mid-call blocks its
amount for at most `lease_s`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, delete, func, insert, select

from ragline.processes import process_alive, process_space
from ragline.state.database import exclusive, increment, open_engine, reading

_LOCK = "ragline day budget"
_metadata = MetaData()
day_spend = Table("day_spend", _metadata, Column("day", String(10), primary_key=True),
                  Column("spent", Float, nullable=False))  # fmt: skip
day_holds = Table(
    "day_holds", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False, index=True),
    Column("amount", Float, nullable=False),
    Column("space", String(300), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
)  # fmt: skip


class DayLedger:
    def __init__(self, url: str, today: Callable[[], str], lease_s: float, clock: Callable[[], float] = time.time):
        self._engine = open_engine(url)
        self._today, self._lease_s, self._clock = today, lease_s, clock
        with exclusive(self._engine, _LOCK) as db:  # replicas starting together create the tables once
            _metadata.create_all(db)

    def reserve(self, amount: float, admit: Callable[[float, float], None]) -> int:
        """Hold `amount` for today if `admit(spent, reserved)` does not raise (then nothing is held)."""
        day = self._today()
        with exclusive(self._engine, _LOCK) as db:
            self._drop_stale(db)
            reserved = db.scalar(select(func.coalesce(func.sum(day_holds.c.amount), 0.0)).where(day_holds.c.day == day))
            admit(self._spent(db, day), reserved)
            row = db.execute(insert(day_holds).values(
                day=day, amount=amount, space=process_space(), pid=os.getpid(), expires_at=self._clock() + self._lease_s,
            ))  # fmt: skip
            return int(row.inserted_primary_key[0])

    def settle(self, hold: int, charged: float) -> None:
        """Turn the hold into what the call was charged, on the day it was taken."""
        with exclusive(self._engine, _LOCK) as db:
            day = db.scalar(select(day_holds.c.day).where(day_holds.c.id == hold)) or self._today()
            db.execute(delete(day_holds).where(day_holds.c.id == hold))
            increment(db, day_spend.c.spent, charged, day=day)

    def spent(self) -> float:
        with reading(self._engine) as db:
            return self._spent(db, self._today())

    @staticmethod
    def _spent(db: Connection, day: str) -> float:
        return db.scalar(select(day_spend.c.spent).where(day_spend.c.day == day)) or 0.0

    def _drop_stale(self, db: Connection) -> None:
        elsewhere = day_holds.c.space != process_space()  # here a live pid holds on, however long its call
        db.execute(delete(day_holds).where(elsewhere, day_holds.c.expires_at < self._clock()))
        here = select(day_holds.c.pid).where(day_holds.c.space == process_space(), day_holds.c.pid != os.getpid())
        gone = [pid for pid in db.scalars(here.distinct()) if not process_alive(pid)]
        if gone:
            db.execute(delete(day_holds).where(day_holds.c.space == process_space(), day_holds.c.pid.in_(gone)))

    def close(self) -> None:
        self._engine.dispose()
