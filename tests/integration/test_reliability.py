"""The reliability layer against a real `llama_cpp.server` (SmolLM2) behind fault-injecting
proxies on 127.0.0.1: each provider of a chain talks to its own proxy, so the tests see
exactly which provider was asked what, and nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import time

import pytest
from fault_proxy import FaultProxy

from ragline.llm.base import ChatMessage, ChatRequest, ProviderError, StreamInterrupted
from ragline.llm.breaker import BreakerSettings, CircuitBreaker
from ragline.llm.budget import Budget, BudgetExceeded, BudgetLimits
from ragline.llm.chain import ChainFailed, ChainMember, ModelChain, RetryPolicy
from ragline.llm.pricing import Price, worst_case_usage
from ragline.llm.providers.openai import OpenAIProvider

REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="Say hello.")], max_tokens=4)
FAST = RetryPolicy(backoff_base=0.01, backoff_max=2.0, deadline=60)
PRICE = Price(input_per_million=2_000.0, output_per_million=8_000.0)  # dear, so cents add up


def member(proxy: FaultProxy, name: str, *, timeout: float = 30.0, window: int | None = None,
           price: Price | None = None, breaker: CircuitBreaker | None = None) -> ChainMember:  # fmt: skip
    provider = OpenAIProvider("smollm2", base_url=proxy.url, name=name, timeout=timeout)
    provider.context_window = window
    return ChainMember(provider, price=price or Price(), timeout=timeout, breaker=breaker or CircuitBreaker())


def chain(*members: ChainMember, policy: RetryPolicy = FAST, budget: Budget | None = None) -> ModelChain:
    return ModelChain(list(members), policy=policy, budget=budget)


def outcomes(attempts) -> list[tuple[str, str, str | None]]:
    return [(a.provider, a.outcome, a.error_kind) for a in attempts]


def diagnose(attempts, proxy: FaultProxy, last: int = 5) -> str:
    """Each attempt in full, and what the proxy saw last: a 5xx with `upstream_status` None and
    an `error` is the proxy's own 502; with `upstream_status` 500 it came from the server."""
    tried = [(a.provider, a.outcome, a.error_kind, a.status, a.error) for a in attempts]
    return f"attempts: {tried}; {proxy.url} last requests: {proxy.log[-last:]}"


def test_429_waits_for_retry_after_then_retries(primary, backup) -> None:
    primary.script(["status:429:retry_after=1"])
    models = chain(member(primary, "primary"), member(backup, "backup"))
    done = models.complete(REQUEST)
    assert done.provider == "primary" and done.text
    assert outcomes(done.attempts) == [("primary", "error", "rate_limit"), ("primary", "ok", None)]
    first, second = primary.log
    assert second.time - first.time >= 0.95  # the server's Retry-After was honoured
    assert backup.log == []


def test_retry_after_longer_than_policy_falls_back(primary, backup) -> None:
    primary.script(["status:429:retry_after=60"])
    done = chain(member(primary, "primary"), member(backup, "backup")).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "rate_limit"), ("backup", "ok", None)]


def test_500s_use_the_retries_then_fall_back(primary, backup) -> None:
    primary.script(["status:500"] * 3)
    done = chain(member(primary, "primary"), member(backup, "backup")).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "server")] * 3 + [("backup", "ok", None)]
    assert done.attempts[0].status == 500
    assert len(primary.log) == 3 and len(backup.log) == 1


@pytest.mark.parametrize(
    ("fault", "kind"), [("hang", "timeout"), ("reset", "connection"), ("malformed", "malformed")]
)
def test_transport_faults_are_retried(primary, backup, fault: str, kind: str) -> None:
    primary.script([fault])
    done = chain(member(primary, "primary", timeout=1.0), member(backup, "backup")).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", kind), ("primary", "ok", None)]


def test_401_does_not_fall_back_unless_configured(primary, backup) -> None:
    primary.script(["status:401"])
    with pytest.raises(ProviderError) as failed:
        chain(member(primary, "primary"), member(backup, "backup")).complete(REQUEST)
    assert failed.value.kind == "auth" and failed.value.status == 401
    assert outcomes(failed.value.attempts) == [("primary", "error", "auth")]
    assert backup.log == []

    primary.script(["status:401"])
    policy = FAST.model_copy(update={"fallback_on": FAST.fallback_on | {"auth"}})
    done = chain(member(primary, "primary"), member(backup, "backup"), policy=policy).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "auth"), ("backup", "ok", None)]


def test_context_length_skips_to_a_larger_window(primary, backup) -> None:
    primary.script(["status:400"])  # the proxy's default 400 is a context-length message
    models = chain(
        member(primary, "small", window=2048),
        member(primary, "same-size", window=2048),
        member(backup, "large", window=8192),
    )
    done = models.complete(REQUEST)
    assert outcomes(done.attempts) == [
        ("small", "error", "context_length"), ("same-size", "skipped", "context_length"), ("large", "ok", None),
    ]  # fmt: skip


def test_every_provider_failing_names_each_attempt(primary, backup) -> None:
    primary.script(["status:503"] * 3)
    backup.script(["status:500"] * 3)
    with pytest.raises(ChainFailed) as failed:
        chain(member(primary, "primary"), member(backup, "backup")).complete(REQUEST)
    assert len(failed.value.attempts) == 6 and failed.value.kind == "server"
    assert "primary" in str(failed.value) and "backup" in str(failed.value)


def test_stream_falls_back_before_the_first_token(primary, backup) -> None:
    primary.script(["status:500"])
    policy = FAST.model_copy(update={"retries_per_provider": 0})
    *deltas, last = list(chain(member(primary, "primary"), member(backup, "backup"), policy=policy).stream(REQUEST))
    assert deltas and all(c.delta for c in deltas)
    assert last.provider == "backup"
    assert outcomes(last.attempts) == [("primary", "error", "server"), ("backup", "ok", None)]


def test_stream_dropped_after_tokens_is_an_error_with_the_partial_text(primary, backup) -> None:
    primary.script(["drop_stream_after=3"])
    request = REQUEST.model_copy(update={"max_tokens": 24})
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as interrupted:
        for chunk in chain(member(primary, "primary"), member(backup, "backup")).stream(request):
            received.append(chunk.delta)
    assert received and interrupted.value.partial_text == "".join(received)
    assert interrupted.value.kind == "connection"
    assert backup.log == []  # no silent switch to another provider mid-answer


def test_async_stream_rules_match_sync(primary, backup) -> None:
    primary.script(["status:500", "drop_stream_after=2"])
    policy = FAST.model_copy(update={"retries_per_provider": 1})
    models = chain(member(primary, "primary"), member(backup, "backup"), policy=policy)

    async def consume() -> list[str]:
        received = []
        async for chunk in models.astream(REQUEST.model_copy(update={"max_tokens": 24})):
            received.append(chunk.delta)
        return received

    with pytest.raises(StreamInterrupted) as interrupted:
        asyncio.run(consume())
    assert outcomes(interrupted.value.attempts) == [("primary", "error", "server"), ("primary", "error", "connection")]
    assert interrupted.value.partial_text


def test_costs_are_priced_and_failed_tries_charged_only_when_maybe_billed(primary, backup) -> None:
    primary.script(["status:500", "hang"])
    budget = Budget()
    models = chain(member(primary, "primary", timeout=1.0, price=PRICE), member(backup, "backup", price=PRICE), budget=budget)
    done = models.complete(REQUEST)
    server_error, timed_out, ok = done.attempts
    worst = PRICE.cost(worst_case_usage(models.members[0].provider, REQUEST))
    assert server_error.cost_usd == 0.0  # a 500 is not billed
    assert timed_out.cost_usd == pytest.approx(worst)  # the server may have done the work
    assert ok.cost_usd == pytest.approx(PRICE.cost(done.usage)) == pytest.approx(done.cost_usd)
    assert budget.run.spent == pytest.approx(worst + done.cost_usd)
    assert budget.run.reserved == pytest.approx(0.0)


def test_ceiling_holds_across_retries_and_fallbacks(primary, backup) -> None:
    first = member(primary, "primary", timeout=0.5, price=PRICE)
    ceiling = 2.5 * PRICE.cost(worst_case_usage(first.provider, REQUEST))  # two worst cases fit, three do not
    budget = Budget(BudgetLimits(per_query_usd=ceiling))
    primary.script(["hang", "hang"])
    models = chain(first, member(backup, "backup", price=PRICE), budget=budget)
    with budget.query() as spent, pytest.raises(BudgetExceeded) as refused:
        models.complete(REQUEST)
    assert refused.value.scope == "query"
    assert spent.spent <= ceiling and spent.reserved == pytest.approx(0.0)
    assert backup.log == []  # refused before the third call, not after


def test_breaker_opens_skips_then_probes_and_closes(primary, backup) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=2, window=60, cooldown=1.0))
    policy = FAST.model_copy(update={"retries_per_provider": 0})
    models = chain(member(primary, "primary", breaker=breaker), member(backup, "backup"), policy=policy)
    primary.script(["status:500", "status:500"])
    models.complete(REQUEST)
    models.complete(REQUEST)
    assert breaker.state == "open"
    asked = len(primary.log)
    skipped = models.complete(REQUEST)
    assert outcomes(skipped.attempts) == [("primary", "skipped", "circuit_open"), ("backup", "ok", None)]
    assert len(primary.log) == asked  # an open breaker sends nothing
    time.sleep(1.1)
    probed = models.complete(REQUEST)
    assert outcomes(probed.attempts) == [("primary", "ok", None)]
    assert breaker.state == "closed"


def test_deadline_bounds_retries(primary, backup) -> None:
    primary.set_default("hang")
    policy = FAST.model_copy(update={"deadline": 2.0, "retries_per_provider": 10, "max_attempts": 20})
    started = time.monotonic()
    with pytest.raises(ChainFailed) as failed:
        chain(member(primary, "primary", timeout=30.0), policy=policy).complete(REQUEST)
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 10  # the 30 s call timeout was cut to the deadline


def test_load_200_concurrent_queries_with_a_flaky_primary(primary, backup) -> None:
    """200 async queries; the primary fails 30% of calls. All are answered, the run's ceiling
    is never passed, and the primary's breaker opens under the failures and closes again."""
    primary.set_default("status:500", rate=0.3, seed=11)
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=5, window=30, cooldown=0.5))
    first = member(primary, "primary", price=PRICE, breaker=breaker, timeout=120)
    requests = [
        REQUEST.model_copy(update={"messages": [ChatMessage(role="user", content=f"Say hello to number {i}.")]})
        for i in range(200)
    ]
    # Room for every query's worst case at once (a 500 is free, so retries fit), not for a leak.
    ceiling = sum(PRICE.cost(worst_case_usage(first.provider, r)) for r in requests)
    budget = Budget(BudgetLimits(per_run_usd=ceiling))
    policy = RetryPolicy(backoff_base=0.05, backoff_max=1.0, deadline=240, retries_per_provider=1)
    models = chain(first, member(backup, "backup", price=PRICE, timeout=120), policy=policy, budget=budget)

    async def one(request: ChatRequest):
        with budget.query():
            return await models.acomplete(request)

    async def run_all():
        try:
            return await asyncio.gather(*(one(r) for r in requests))
        finally:
            await models.aclose()

    answers = asyncio.run(run_all())
    assert len(answers) == 200 and all(a.text for a in answers)
    assert budget.run.spent <= ceiling and budget.run.reserved == pytest.approx(0.0)
    assert sum(a.cost_usd for a in answers) == pytest.approx(budget.run.spent)
    states = [state for _, state in breaker.transitions]
    assert "open" in states, "30% failures under load should open the breaker"
    assert primary.count("status:500") > 0 and len(backup.log) > 0

    primary.set_default("pass")
    time.sleep(0.6)
    # The probe gets the load run's timeout, not 30 s: once, on a slow CI machine, it took
    # longer (cause not found: the server answers in arrival order, so no work of the load
    # should be queued ahead of it).
    again = chain(member(primary, "primary", breaker=breaker, timeout=120), member(backup, "backup"), policy=policy)
    probe = again.complete(REQUEST)
    assert probe.provider == "primary", diagnose(probe.attempts, primary)  # the half-open probe succeeds
    assert breaker.state == "closed"
    again.close()


def test_query_deadline_is_shared_by_every_call_inside(primary, backup) -> None:
    from ragline.llm.chain import deadline

    primary.set_default("hang")
    models = chain(member(primary, "primary", timeout=30.0), policy=FAST.model_copy(update={"deadline": None}))
    started = time.monotonic()
    with deadline(1.5), pytest.raises(ChainFailed) as failed:
        models.complete(REQUEST)  # the 30 s call timeout is cut to the query's deadline
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 10
    asked = len(primary.log)
    with deadline(0.0), pytest.raises(ChainFailed, match="deadline"):
        models.complete(REQUEST)  # a step after the deadline fails without a call
    assert len(primary.log) == asked
