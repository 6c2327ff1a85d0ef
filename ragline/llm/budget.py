"""Cost ceilings per query, per run and per day that no sequence of calls can overrun.

Before a call, its worst-case cost (whole prompt + max_tokens at the model's price) is
reserved against every ceiling at once; afterwards the reservation is settled to what the
call was charged. Calls in flight count at their worst case, so concurrent calls, retries,
fallbacks and every LLM step of a pipeline share the same ceilings and cannot jointly pass
them. The day's spend lives in a database (`ragline.llm.day_ledger`): SQLite shared by every
process using the store directory, or PostgreSQL shared by every replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class BudgetLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_query_usd: float | None = Field(None, gt=0, description="Ceiling for all LLM calls of one query.")
    per_run_usd: float | None = Field(None, gt=0, description="Ceiling for one process (a CLI call, an eval run).")
    per_day_usd: float | None = Field(
        None, gt=0, description="Ceiling per UTC day, across processes (persisted; across replicas with [shared_state])."
    )
    hold_lease_s: float = Field(
        900.0, gt=0, description="How long a call's day-budget hold counts when its process vanished on another "
        "machine (on this one it is dropped at once); longer than any LLM call with its retries.",
    )


class BudgetExceeded(RuntimeError):
    """A call was refused because its worst-case cost could pass a ceiling."""

    def __init__(self, scope: str, limit: float, spent: float, reserved: float, needed: float):
        self.scope, self.limit, self.spent, self.reserved, self.needed = scope, limit, spent, reserved, needed
        super().__init__(
            f"per-{scope} budget of ${limit:.6f} could be exceeded: ${spent:.6f} spent, "
            f"${reserved:.6f} held by calls in flight, and this call may cost up to ${needed:.6f}. "
            f"Raise [budget] per_{scope}_usd, or lower llm.max_tokens / the prompt size."
        )


@dataclass
class Tally:
    spent: float = 0.0
    reserved: float = 0.0

    def check(self, scope: str, limit: float | None, amount: float) -> None:
        if limit is not None and self.spent + self.reserved + amount > limit:
            raise BudgetExceeded(scope, limit, self.spent, self.reserved, amount)


@dataclass
class Reservation:
    amount: float
    query: Tally
    day_row: int | None = None
    settled: bool = field(default=False)


class Budget:
    """Ceilings for one run (this object's lifetime); `query()` scopes per-query spend."""

    def __init__(
        self,
        limits: BudgetLimits | None = None,
        *,
        day_path: Path | None = None,
        day_url: str | None = None,
        today: Callable[[], str] = lambda: datetime.now(UTC).date().isoformat(),
    ):
        self.limits = limits or BudgetLimits()
        self.run = Tally()
        self._lock = threading.Lock()
        self._query: ContextVar[Tally | None] = ContextVar(f"ragline_query_budget_{id(self)}", default=None)
        self._days = None
        if self.limits.per_day_usd:
            from ragline.llm.day_ledger import DayLedger

            if day_url is None and day_path is None:
                raise ValueError("a per-day budget needs a place to persist the day's spend (day_path or day_url)")
            if day_url is None:
                day_path.parent.mkdir(parents=True, exist_ok=True)
            self._days = DayLedger(day_url or f"sqlite:///{day_path}", today, self.limits.hold_lease_s)

    @contextmanager
    def query(self) -> Iterator[Tally]:
        """Every call inside shares one per-query ceiling (also across async tasks it spawns)."""
        tally = Tally()
        token = self._query.set(tally)
        try:
            yield tally
        finally:
            self._query.reset(token)

    def reserve(self, amount: float) -> Reservation:
        """Hold `amount` against every ceiling, or raise BudgetExceeded and hold nothing."""
        query = self._query.get() or Tally()  # outside a query scope, each call is its own query
        with self._lock:
            query.check("query", self.limits.per_query_usd, amount)
            self.run.check("run", self.limits.per_run_usd, amount)
            day_row = self._days.reserve(amount, self._admit_day(amount)) if self._days else None
            query.reserved += amount
            self.run.reserved += amount
        return Reservation(amount, query, day_row)

    def _admit_day(self, amount: float) -> Callable[[float, float], None]:
        return lambda spent, reserved: Tally(spent, reserved).check("day", self.limits.per_day_usd, amount)

    def settle(self, reservation: Reservation, charged: float) -> None:
        """Replace the held amount by what the call was charged (once; later calls are no-ops)."""
        if reservation.settled:
            return
        if charged > reservation.amount + 1e-12:
            log.warning("a call was charged $%.6f, above its reserved worst case $%.6f", charged, reservation.amount)
        with self._lock:
            reservation.settled = True
            for tally in (reservation.query, self.run):
                tally.reserved -= reservation.amount
                tally.spent += charged
            if self._days and reservation.day_row is not None:
                self._days.settle(reservation.day_row, charged)

    def spent_today(self) -> float:
        with self._lock:
            return self._days.spent() if self._days else 0.0

    def close(self) -> None:
        if self._days:
            self._days.close()
