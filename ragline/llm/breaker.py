"""A circuit breaker per provider: stop sending to a provider that keeps failing, then probe.

Closed: calls pass; `failure_threshold` failures within `window` seconds open it. Open: calls
are skipped (the chain moves on without waiting) until `cooldown` has passed. Half-open: one
probe call passes; its success closes the breaker, its failure opens it for another cooldown.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BreakerState = Literal["closed", "open", "half_open"]


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(5, ge=1, description="Failures within `window` that open the breaker.")
    window: float = Field(60.0, gt=0, description="Seconds over which failures are counted.")
    cooldown: float = Field(30.0, gt=0, description="Seconds an open breaker skips its provider.")


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._probing = False
        self.transitions: list[tuple[float, BreakerState]] = []  # (clock time, new state)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """May a call go to this provider now? In half-open state only the one probe may."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.settings.cooldown:
                self._set("half_open")
            if self._state == "half_open":
                if self._probing:
                    return False
                self._probing = True
                return True
            return self._state == "closed"

    def record_success(self) -> None:
        with self._lock:
            if self._state == "half_open":
                self._failures.clear()
                self._set("closed")
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self._state == "half_open":
                self._open(now)
                return
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self.settings.window:
                self._failures.popleft()
            if self._state == "closed" and len(self._failures) >= self.settings.failure_threshold:
                self._open(now)

    def release(self) -> None:
        """A call ended with no verdict on the provider (cancelled, or refused by the budget):
        let the next call probe instead."""
        with self._lock:
            self._probing = False

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probing = False
        self._set("open")

    def _set(self, state: BreakerState) -> None:
        self._state = state
        self.transitions.append((self._clock(), state))
