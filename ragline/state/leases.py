"""A named lease in the shared-state database: one holder at a time (e.g. the one replica
that fires schedules). The holder renews it while it lives; when it stops it lets go, and
when it vanishes another process takes over once the lease expires."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Column, Float, MetaData, String, Table, delete, insert, select, update

from ragline.processes import process_space
from ragline.state.database import exclusive, open_engine

_metadata = MetaData()
leases = Table("leases", _metadata, Column("name", String(200), primary_key=True),
               Column("holder", String(400), nullable=False), Column("expires_at", Float, nullable=False))  # fmt: skip


class Lease:
    def __init__(self, url: str, name: str, *, ttl_s: float = 30.0, clock: Callable[[], float] = time.time):
        self.name, self.ttl_s, self._clock = name, ttl_s, clock
        self.holder = f"{process_space()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._engine = open_engine(url)
        self._lock = threading.Lock()
        self._holding, self._next_check = False, float("-inf")
        with exclusive(self._engine, "ragline leases") as db:
            _metadata.create_all(db)

    def hold(self) -> bool:
        """Whether this process holds the lease now. The holder renews it at half its time;
        others look every sixth of it and take it once it is free or expired. Raises
        SharedStateError when the database cannot be reached."""
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return self._holding
            try:
                self._holding = self._take(now)
            except Exception:
                self._holding, self._next_check = False, now + self.ttl_s / 6  # not again at every tick
                raise
            self._next_check = now + self.ttl_s / (2 if self._holding else 6)
            return self._holding

    def _take(self, now: float) -> bool:
        with exclusive(self._engine, "ragline leases") as db:
            row = db.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == self.name)).first()
            if row is not None and row.holder != self.holder and row.expires_at > now:
                return False
            values = {"holder": self.holder, "expires_at": now + self.ttl_s}
            if row is None:
                db.execute(insert(leases).values(name=self.name, **values))
            else:
                db.execute(update(leases).where(leases.c.name == self.name).values(**values))
            return True

    def release(self) -> None:
        """Let go now (a clean stop), so another process need not wait for the expiry."""
        with self._lock:
            self._holding, self._next_check = False, float("-inf")
            with exclusive(self._engine, "ragline leases") as db:
                db.execute(delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder))

    def close(self) -> None:
        self._engine.dispose()
