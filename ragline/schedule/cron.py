"""When a schedule fires next: a 5-field cron expression on the wall clock of a time zone, or
a fixed interval. Times are Unix timestamps.

Daylight saving time is handled the way classic cron daemons (Vixie cron, cronie) do:

- an expression with fixed hours ("30 2 * * *") still fires once on a DST day: a wall time
  in the spring-forward gap fires at the first instant after the gap (03:00 in Berlin on
  the last Sunday of March), and a wall time of the repeated fall-back hour fires at its
  first occurrence only;
- an expression for every hour ("*/15 * * * *") keeps its pace in real time: wall times
  in the gap do not exist and fire nowhere, and the repeated hour fires again.

croniter walks naive wall times; this module maps each to the instants it names in the zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ragline.ingest.config import SourceConfig

# More than any UTC-offset change near one wall time (DST shifts are 1 h, 2 h at most).
MAX_SHIFT = timedelta(hours=3)


class CronSchedule:
    def __init__(self, expression: str, timezone: str):
        self.expression = expression
        self.zone = ZoneInfo(timezone)
        hours = croniter(expression).expanded[1]
        self._every_hour = hours == ["*"] or len(hours) == 24

    def describe(self) -> str:
        return self.expression

    def _wall(self, instant: float) -> datetime:
        return datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None)

    def _instants(self, wall: datetime) -> list[float]:
        """The instants at which the wall time `wall` fires (none, one, or both occurrences)."""
        first, second = wall.replace(tzinfo=self.zone, fold=0), wall.replace(tzinfo=self.zone, fold=1)
        if self._wall(first.timestamp()) != wall:  # in the spring-forward gap
            return [] if self._every_hour else [self._transition(first.timestamp(), second.timestamp())]
        if first.utcoffset() != second.utcoffset() and self._every_hour:  # the repeated hour
            return [first.timestamp(), second.timestamp()]
        return [first.timestamp()]

    def _transition(self, a: float, b: float) -> float:
        """The instant between `a` and `b` where the zone's offset changes: the end of a gap."""
        low, high = int(min(a, b)), math.ceil(max(a, b))
        after = datetime.fromtimestamp(high, self.zone).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).utcoffset() == after:
                high = middle
            else:
                low = middle
        return float(high)

    def _shifts_near(self, instant: float) -> bool:
        """Whether the zone's offset changes within MAX_SHIFT of `instant`."""
        span = MAX_SHIFT.total_seconds()
        before, after = (datetime.fromtimestamp(instant + d, self.zone).utcoffset() for d in (-span, span))
        return before != after

    def next_after(self, instant: float) -> float:
        """The first fire time strictly after `instant`.

        Near an offset change, wall times and instants are not in the same order, so there
        the walk starts MAX_SHIFT early and goes on until no later wall time can name an
        earlier instant; elsewhere the first wall time after `instant` is the answer."""
        near = self._shifts_near(instant)
        walk = croniter(self.expression, self._wall(instant) - (MAX_SHIFT if near else timedelta(0)))
        best: tuple[float, datetime] | None = None
        while True:
            wall = walk.get_next(datetime)
            if best is not None and (wall - best[1] > MAX_SHIFT or not self._shifts_near(best[0])):
                return best[0]
            for fire in self._instants(wall):
                if fire > instant and (best is None or fire < best[0]):
                    best = (fire, wall)


@dataclass(frozen=True)
class IntervalSchedule:
    """Every `seconds`, on multiples of it since the epoch (so a restart keeps the beat)."""

    seconds: float

    def describe(self) -> str:
        return f"every {self.seconds:g} s"

    def next_after(self, instant: float) -> float:
        return (math.floor(instant / self.seconds) + 1) * self.seconds


Schedule = CronSchedule | IntervalSchedule


def schedule_of(entry: SourceConfig) -> Schedule | None:
    if entry.schedule is not None:
        return CronSchedule(entry.schedule, entry.timezone)
    if entry.interval_seconds is not None:
        return IntervalSchedule(entry.interval_seconds)
    return None


def period(schedule: Schedule, now: float) -> float:
    """One interval of the schedule: the time between its next two fires."""
    first = schedule.next_after(now)
    return schedule.next_after(first) - first


def missed_tick(schedule: Schedule, last_started: float | None, now: float, window: float | None) -> bool:
    """Whether a tick fell between the source's last run and `now`, within `window` seconds
    of `now` (default: one period). However many there were, the answer is one catch-up run;
    a source that never ran has missed nothing (its first tick runs it)."""
    if last_started is None:
        return False
    window = period(schedule, now) if window is None else window
    return schedule.next_after(max(last_started, now - window)) <= now
