"""Budget ceilings and the circuit breaker on their own: real SQLite, real processes, an
injected clock (no sleeping through cooldowns)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from ragline.llm.breaker import BreakerSettings, CircuitBreaker
from ragline.llm.budget import Budget, BudgetExceeded, BudgetLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- budget ------------------------------------------------------------------------------------


def test_reservation_blocks_until_settled() -> None:
    budget = Budget(BudgetLimits(per_run_usd=1.0))
    held = budget.reserve(0.6)
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve(0.5)  # 0.6 in flight + 0.5 could pass 1.0
    assert refused.value.scope == "run" and "per_run_usd" in str(refused.value)
    budget.settle(held, 0.1)  # the call cost far less than its worst case
    budget.reserve(0.5)
    assert budget.run.spent == pytest.approx(0.1)
    assert budget.run.reserved == pytest.approx(0.5)


def test_settle_is_idempotent() -> None:
    budget = Budget(BudgetLimits(per_run_usd=1.0))
    held = budget.reserve(0.4)
    budget.settle(held, 0.3)
    budget.settle(held, 0.3)
    assert (budget.run.spent, budget.run.reserved) == (pytest.approx(0.3), pytest.approx(0.0))


def test_query_scope_is_per_query() -> None:
    budget = Budget(BudgetLimits(per_query_usd=0.5))
    with budget.query():
        budget.settle(budget.reserve(0.3), 0.3)
        with pytest.raises(BudgetExceeded) as refused:
            budget.reserve(0.3)  # the second step of the same query
        assert refused.value.scope == "query"
    with budget.query():
        budget.settle(budget.reserve(0.3), 0.3)  # a new query starts from zero
    assert budget.run.spent == pytest.approx(0.6)


def test_concurrent_reservations_never_pass_the_ceiling() -> None:
    budget = Budget(BudgetLimits(per_run_usd=1.0))
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                held = budget.reserve(0.03)
            except BudgetExceeded:
                continue
            budget.settle(held, 0.03)
            with lock:
                granted.append(0.03)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) <= 1.0 + 1e-9
    assert budget.run.spent == pytest.approx(sum(granted))
    assert len(granted) == 33  # everything that fits was granted


def test_day_budget_is_shared_across_processes(tmp_path) -> None:
    path = tmp_path / "budget.sqlite"
    limits = BudgetLimits(per_day_usd=1.0)
    first = Budget(limits, day_path=path)
    first.settle(first.reserve(0.7), 0.7)
    first.close()
    script = (
        "import sys; from pathlib import Path\n"
        "from ragline.llm.budget import Budget, BudgetLimits, BudgetExceeded\n"
        "b = Budget(BudgetLimits(per_day_usd=1.0), day_path=Path(sys.argv[1]))\n"
        "try:\n    b.reserve(0.5)\nexcept BudgetExceeded as e:\n    print('refused', e.scope)\n"
        "b.settle(b.reserve(0.2), 0.2); print(round(b.spent_today(), 6))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["refused", "day", "0.9"]


def test_dead_process_reservations_are_dropped(tmp_path) -> None:
    path = tmp_path / "budget.sqlite"
    script = (
        "import os, sys; from pathlib import Path\n"
        "from ragline.llm.budget import Budget, BudgetLimits\n"
        "b = Budget(BudgetLimits(per_day_usd=1.0), day_path=Path(sys.argv[1]))\n"
        "b.reserve(0.9); os._exit(0)  # dies holding a reservation\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    budget = Budget(BudgetLimits(per_day_usd=1.0), day_path=path)
    budget.settle(budget.reserve(0.9), 0.0)  # not blocked by the dead process's hold


def test_day_budget_needs_a_path() -> None:
    with pytest.raises(ValueError, match="day_path"):
        Budget(BudgetLimits(per_day_usd=1.0))


# --- circuit breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_failures_in_window_then_probes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=3, window=10, cooldown=5), clock=clock)
    breaker.record_failure()
    clock.now += 11  # the first failure leaves the window
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5
    assert breaker.allow()  # the one half-open probe
    assert breaker.state == "half_open" and not breaker.allow()
    breaker.record_failure()  # the probe failed: open for another cooldown
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
    assert [state for _, state in breaker.transitions] == ["open", "half_open", "open", "half_open", "closed"]


def test_released_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, cooldown=1), clock=clock)
    breaker.record_failure()
    clock.now += 1
    assert breaker.allow()
    breaker.release()  # the probe was cancelled: no verdict
    assert breaker.allow()
