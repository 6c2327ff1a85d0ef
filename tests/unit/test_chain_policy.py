"""The reliability chain's policy (`ragline.llm.chain`) on scripted `FakeProvider` members:
no servers, no real waiting. The chain's backoff sleeps go to a fake clock that is also the
chain's, the breakers' and the query deadline's clock, so every test is deterministic."""

from __future__ import annotations

import asyncio
import random
from contextlib import ExitStack

import pytest

from ragline.llm.base import ChatMessage, ChatRequest, ProviderError, StreamInterrupted
from ragline.llm.breaker import BreakerSettings, CircuitBreaker
from ragline.llm.budget import Budget, BudgetExceeded, BudgetLimits
from ragline.llm.chain import ChainFailed, ChainMember, ModelChain, RetryPolicy, deadline
from ragline.llm.fake import CutStream, Fail, FakeProvider
from ragline.llm.pricing import Price, worst_case_usage

REQUEST = ChatRequest(messages=[ChatMessage(role="user", content="Say hello.")], max_tokens=4)
LONG = ChatRequest(messages=[ChatMessage(role="user", content=" ".join(["word"] * 10))], max_tokens=4)
POLICY = RetryPolicy(backoff_base=0.0, backoff_max=8.0, deadline=None)
NO_RETRY = POLICY.model_copy(update={"retries_per_provider": 0})
PRICE = Price(input_per_million=1_000_000.0, output_per_million=1_000_000.0)  # $1 a token
FREE = Price()
SERVER = Fail("server", status=500)


class Clock:
    """A fake monotonic clock; the chain's sleeps are recorded and advance it."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fake(name: str, *script, **kwargs) -> FakeProvider:
    return FakeProvider(list(script) or [f"{name} answer"], name=name, model=f"{name}-model", **kwargs)


def make_chain(clock: Clock, *members, policy=POLICY, budget=None, price=FREE, rng=None) -> ModelChain:
    """A chain over FakeProviders (or ready ChainMembers); breakers and chain run on `clock`."""
    members = [m if isinstance(m, ChainMember) else ChainMember(m, price=price, breaker=CircuitBreaker(clock=clock))
               for m in members]  # fmt: skip
    return ModelChain(members, policy=policy, budget=budget, clock=clock, rng=rng, sleep=clock.sleep, asleep=clock.asleep)


def outcomes(attempts) -> list[tuple[str, str, str | None]]:
    return [(a.provider, a.outcome, a.error_kind) for a in attempts]


def played(clock: Clock, *script, takes: float = 0.0) -> tuple[list[float], object]:
    """A callable script playing `script` in order (the last repeats); each call "takes"
    `takes` seconds of the fake clock. Returns the clock at each call and the script."""
    seen: list[float] = []

    def play(request: ChatRequest):
        seen.append(clock.now)
        clock.now += takes
        return script[min(len(seen) - 1, len(script) - 1)]

    return seen, play


def test_transient_errors_are_retried_on_the_same_provider(clock) -> None:
    primary, backup = fake("primary", Fail("server", status=503), Fail("timeout"), "hello there"), fake("backup")
    done = make_chain(clock, primary, backup).complete(REQUEST)
    assert (done.text, done.provider) == ("hello there", "primary")
    assert outcomes(done.attempts) == [
        ("primary", "error", "server"), ("primary", "error", "timeout"), ("primary", "ok", None),
    ]  # fmt: skip
    assert done.attempts[0].status == 503 and done.attempts[-1].model == "primary-model"
    assert (primary.calls, backup.calls) == (3, 0)


def test_retry_after_is_waited_before_the_retry(clock) -> None:
    seen, script = played(clock, Fail("rate_limit", status=429, retry_after=2.0), "after the wait")
    done = make_chain(clock, FakeProvider(script, name="primary"), fake("backup")).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "rate_limit"), ("primary", "ok", None)]
    assert clock.slept == [2.0] and seen[1] - seen[0] >= 2.0


@pytest.mark.parametrize(("retry_after", "policy"), [
    (60.0, POLICY),  # longer than backoff_max
    (20.0, POLICY.model_copy(update={"backoff_max": 30.0, "deadline": 10.0})),  # longer than the time left
])  # fmt: skip
def test_retry_after_too_long_falls_back_instead(clock, retry_after, policy) -> None:
    primary, backup = fake("primary", Fail("rate_limit", status=429, retry_after=retry_after)), fake("backup")
    done = make_chain(clock, primary, backup, policy=policy).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "rate_limit"), ("backup", "ok", None)]
    assert retry_after not in clock.slept and primary.calls == 1


def test_backoff_is_full_jitter_doubling_up_to_the_cap(clock) -> None:
    policy = POLICY.model_copy(update={"backoff_base": 1.0, "backoff_max": 1.5, "retries_per_provider": 3})
    primary = fake("primary", SERVER, SERVER, SERVER, "finally")
    done = make_chain(clock, primary, policy=policy, rng=random.Random(7)).complete(REQUEST)
    assert done.text == "finally"
    same = random.Random(7)
    assert clock.slept == [same.uniform(0, 1.0), same.uniform(0, 1.5), same.uniform(0, 1.5)]


@pytest.mark.parametrize("retries", [0, 2])
def test_fallback_goes_in_order_after_the_retries(clock, retries) -> None:
    first, second, third = fake("first", SERVER), fake("second"), fake("third")
    policy = POLICY.model_copy(update={"retries_per_provider": retries})
    done = make_chain(clock, first, second, third, policy=policy).complete(REQUEST)
    assert (done.text, done.provider) == ("second answer", "second")
    assert outcomes(done.attempts) == [("first", "error", "server")] * (retries + 1) + [("second", "ok", None)]
    assert (first.calls, second.calls, third.calls) == (retries + 1, 1, 0)


@pytest.mark.parametrize(("kind", "status"), [("bad_request", 400), ("auth", 401), ("auth", 403)])
def test_non_retryable_kinds_fail_at_once(clock, kind, status) -> None:
    primary, backup = fake("primary", Fail(kind, status=status)), fake("backup")
    with pytest.raises(ProviderError) as failed:
        make_chain(clock, primary, backup).complete(REQUEST)
    assert not isinstance(failed.value, ChainFailed)  # the provider's own error, unwrapped
    assert (failed.value.kind, failed.value.status) == (kind, status)
    assert outcomes(failed.value.attempts) == [("primary", "error", kind)]
    assert (primary.calls, backup.calls) == (1, 0)


def test_policy_can_retry_or_fall_back_on_other_kinds(clock) -> None:
    primary, backup = fake("primary", Fail("auth", status=401)), fake("backup")
    policy = POLICY.model_copy(update={"fallback_on": POLICY.fallback_on | {"auth"}})
    done = make_chain(clock, primary, backup, policy=policy).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "auth"), ("backup", "ok", None)]

    primary = fake("primary", Fail("bad_request", status=400), "fixed")
    policy = POLICY.model_copy(update={"retry_on": POLICY.retry_on | {"bad_request"}})
    done = make_chain(clock, primary, fake("backup"), policy=policy).complete(REQUEST)
    assert outcomes(done.attempts) == [("primary", "error", "bad_request"), ("primary", "ok", None)]


def test_context_length_skips_to_a_larger_window(clock) -> None:
    small, same, large = (fake(name, context_window=w) for name, w in [("small", 8), ("same", 8), ("large", 100)])
    done = make_chain(clock, small, same, large).complete(LONG)
    assert outcomes(done.attempts) == [
        ("small", "error", "context_length"), ("same", "skipped", "context_length"), ("large", "ok", None),
    ]  # fmt: skip
    assert done.attempts[0].status == 400 and "not larger than 8" in done.attempts[1].error
    assert (small.calls, same.calls, large.calls) == (1, 0, 1)  # context errors are never retried


def test_attempt_limit_is_shared_across_retries_and_fallbacks(clock) -> None:
    a, b, c = fake("a", SERVER), fake("b", SERVER), fake("c")
    policy = POLICY.model_copy(update={"max_attempts": 3, "retries_per_provider": 1})
    with pytest.raises(ChainFailed) as failed:
        make_chain(clock, a, b, c, policy=policy).complete(REQUEST)
    assert failed.value.kind == "server" and "after 3 calls" in str(failed.value)
    assert outcomes(failed.value.attempts) == [("a", "error", "server")] * 2 + [("b", "error", "server")]
    assert (a.calls, b.calls, c.calls) == (2, 1, 0)


@pytest.mark.parametrize("how", ["policy", "scope", "nested scope"])
def test_deadline_is_shared_across_retries_and_fallbacks(clock, how) -> None:
    primary, backup = FakeProvider(played(clock, SERVER, takes=1.0)[1], name="primary"), fake("backup")
    policy = POLICY.model_copy(update={"retries_per_provider": 5, "deadline": 2.5 if how == "policy" else None})
    with ExitStack() as scopes, pytest.raises(ChainFailed) as failed:
        if how != "policy":
            scopes.enter_context(deadline(2.5, clock=clock))
        if how == "nested scope":
            scopes.enter_context(deadline(100.0, clock=clock))  # an inner scope cannot lengthen it
        make_chain(clock, primary, backup, policy=policy).complete(REQUEST)
    assert failed.value.kind == "timeout" and "deadline" in str(failed.value)
    assert outcomes(failed.value.attempts) == [("primary", "error", "server")] * 3
    assert backup.calls == 0  # falling back did not restart the clock


def test_deadline_with_a_slow_real_provider(clock) -> None:
    primary, backup = fake("primary", SERVER, delay=0.03), fake("backup")
    models = ModelChain([ChainMember(primary), ChainMember(backup)], policy=POLICY)  # real monotonic clock
    with deadline(0.05), pytest.raises(ChainFailed) as failed:
        models.complete(REQUEST)
    assert failed.value.kind == "timeout" and backup.calls == 0
    assert primary.calls >= 1 and {a.provider for a in failed.value.attempts} == {"primary"}


def test_a_passed_deadline_fails_without_a_call(clock) -> None:
    primary = fake("primary")
    with deadline(0.0, clock=clock), pytest.raises(ChainFailed, match="deadline") as failed:
        make_chain(clock, primary).complete(REQUEST)
    assert failed.value.attempts == [] and primary.calls == 0


class TimeoutRecorder(FakeProvider):
    def complete(self, request, *, timeout=None):
        self.timeouts = [*getattr(self, "timeouts", []), timeout]
        return super().complete(request, timeout=timeout)


@pytest.mark.parametrize(("member_timeout", "expected"), [(30.0, 5.0), (2.0, 2.0), (None, 5.0)])
def test_call_timeout_is_cut_to_the_time_left(clock, member_timeout, expected) -> None:
    provider = TimeoutRecorder(name="primary")
    member = ChainMember(provider, timeout=member_timeout, breaker=CircuitBreaker(clock=clock))
    make_chain(clock, member, policy=POLICY.model_copy(update={"deadline": 5.0})).complete(REQUEST)
    assert provider.timeouts == [expected]


def test_breaker_opens_skips_the_member_and_half_opens_after_cooldown(clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=2, window=60, cooldown=30), clock=clock)
    primary, backup = fake("primary", SERVER, SERVER, SERVER, "primary again"), fake("backup")
    models = make_chain(clock, ChainMember(primary, breaker=breaker), backup, policy=NO_RETRY)
    assert [models.complete(REQUEST).provider for _ in range(2)] == ["backup", "backup"]
    assert breaker.state == "open"
    for wait in (0.0, 29.9):
        clock.now += wait
        skipped = models.complete(REQUEST)
        assert outcomes(skipped.attempts) == [("primary", "skipped", "circuit_open"), ("backup", "ok", None)]
    assert primary.calls == 2  # an open breaker sends nothing
    clock.now += 0.1
    probe = models.complete(REQUEST)  # the half-open probe fails: open for another cooldown
    assert outcomes(probe.attempts) == [("primary", "error", "server"), ("backup", "ok", None)]
    assert breaker.state == "open"
    clock.now += 30
    healed = models.complete(REQUEST)
    assert outcomes(healed.attempts) == [("primary", "ok", None)] and healed.text == "primary again"
    assert [state for _, state in breaker.transitions] == ["open", "half_open", "open", "half_open", "closed"]


def test_an_open_breaker_everywhere_fails_without_a_call(clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1), clock=clock)
    models = make_chain(clock, ChainMember(fake("primary", Fail("bad_request", status=400)), breaker=breaker))
    with pytest.raises(ProviderError):
        models.complete(REQUEST)
    assert breaker.state == "closed"  # the request was wrong, not the provider: no failure counted
    breaker.record_failure()
    with pytest.raises(ChainFailed) as failed:
        models.complete(REQUEST)
    assert failed.value.kind == "circuit_open" and models.members[0].provider.calls == 1
    assert outcomes(failed.value.attempts) == [("primary", "skipped", "circuit_open")]


@pytest.mark.parametrize("scope", ["query", "run", "day"])
def test_budget_refuses_a_call_that_could_pass_the_ceiling(clock, tmp_path, scope) -> None:
    primary, backup = fake("primary"), fake("backup")
    worst = PRICE.cost(worst_case_usage(primary, REQUEST))  # 2 prompt words + 4 max tokens
    budget = Budget(BudgetLimits(**{f"per_{scope}_usd": worst - 0.5}), day_path=tmp_path / "day.sqlite")
    models = make_chain(clock, primary, backup, budget=budget, price=PRICE)
    with pytest.raises(BudgetExceeded) as refused:
        models.complete(REQUEST)
    budget.close()
    assert (refused.value.scope, refused.value.needed) == (scope, pytest.approx(6.0))
    assert (primary.calls, backup.calls) == (0, 0)
    assert budget.run.reserved == 0.0 and models.members[0].breaker.allow()


def test_ceiling_holds_across_retries_and_fallbacks(clock) -> None:
    primary, backup = fake("primary", Fail("timeout")), fake("backup")
    worst = PRICE.cost(worst_case_usage(primary, REQUEST))
    budget = Budget(BudgetLimits(per_query_usd=2.5 * worst))  # two worst cases fit, three do not
    models = make_chain(clock, primary, backup, budget=budget, price=PRICE)
    with budget.query() as tally, pytest.raises(BudgetExceeded) as refused:
        models.complete(REQUEST)
    assert refused.value.scope == "query" and (primary.calls, backup.calls) == (2, 0)
    assert tally.spent == pytest.approx(2 * worst) and tally.reserved == pytest.approx(0.0)


def test_failed_tries_are_charged_only_when_maybe_billed(clock) -> None:
    primary = fake("primary", SERVER, Fail("timeout"), "hi there")
    budget = Budget()
    done = make_chain(clock, primary, budget=budget, price=PRICE).complete(REQUEST)
    worst = PRICE.cost(worst_case_usage(primary, REQUEST))
    assert [a.cost_usd for a in done.attempts] == [0.0, pytest.approx(worst), pytest.approx(4.0)]
    assert done.cost_usd == pytest.approx(PRICE.cost(done.usage)) == pytest.approx(4.0)  # 2 in + 2 out
    assert budget.run.spent == pytest.approx(worst + 4.0) and budget.run.reserved == pytest.approx(0.0)


def collect(chunks) -> tuple[str, object]:
    chunks = list(chunks)
    assert all(c.delta for c in chunks[:-1]) and not chunks[-1].delta
    return "".join(c.delta for c in chunks), chunks[-1]


def test_stream_falls_back_before_the_first_token(clock) -> None:
    primary, backup = fake("primary", SERVER), fake("backup", "streamed from backup")
    text, last = collect(make_chain(clock, primary, backup, policy=NO_RETRY).stream(REQUEST))
    assert text == "streamed from backup" and last.provider == "backup"
    assert outcomes(last.attempts) == [("primary", "error", "server"), ("backup", "ok", None)]
    assert last.usage.completion_tokens == 3 and last.finish_reason == "stop"


def test_stream_cut_before_any_token_is_still_retried(clock) -> None:
    primary = fake("primary", CutStream("never seen", after=0), "second try")
    text, last = collect(make_chain(clock, primary, fake("backup")).stream(REQUEST))
    assert text == "second try"
    assert outcomes(last.attempts) == [("primary", "error", "connection"), ("primary", "ok", None)]


def test_stream_cut_after_tokens_raises_with_the_partial_text(clock) -> None:
    primary, backup = fake("primary", CutStream("one two three four", after=2), "unused"), fake("backup")
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as cut:
        for chunk in make_chain(clock, primary, backup).stream(REQUEST):
            received.append(chunk.delta)
    assert received == ["one ", "two "] and cut.value.partial_text == "one two "
    assert (cut.value.kind, cut.value.provider) == ("connection", "primary")
    assert outcomes(cut.value.attempts) == [("primary", "error", "connection")]
    assert (primary.calls, backup.calls) == (1, 0)  # no retry, no silent switch mid-answer


def test_acomplete_retries_then_falls_back(clock) -> None:
    primary, backup = fake("primary", Fail("rate_limit", status=429, retry_after=1.5), SERVER), fake("backup")
    models = make_chain(clock, primary, backup, policy=POLICY.model_copy(update={"retries_per_provider": 1}))
    done = asyncio.run(models.acomplete(REQUEST))
    assert (done.text, done.provider) == ("backup answer", "backup")
    assert outcomes(done.attempts) == [
        ("primary", "error", "rate_limit"), ("primary", "error", "server"), ("backup", "ok", None),
    ]  # fmt: skip
    assert clock.slept == [1.5, 0.0]


async def consume(chunks, received: list[str]):
    async for chunk in chunks:
        received.append(chunk.delta)
    return chunk


def test_astream_falls_back_before_the_first_token(clock) -> None:
    primary, backup = fake("primary", SERVER), fake("backup", "async backup text")
    received: list[str] = []
    last = asyncio.run(consume(make_chain(clock, primary, backup, policy=NO_RETRY).astream(REQUEST), received))
    assert "".join(received) == "async backup text" and last.provider == "backup"
    assert outcomes(last.attempts) == [("primary", "error", "server"), ("backup", "ok", None)]


def test_astream_retries_then_raises_on_a_cut_after_tokens(clock) -> None:
    primary, backup = fake("primary", SERVER, CutStream("a b c d", after=2)), fake("backup")
    models = make_chain(clock, primary, backup, policy=POLICY.model_copy(update={"retries_per_provider": 1}))
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as cut:
        asyncio.run(consume(models.astream(REQUEST), received))
    assert cut.value.partial_text == "".join(received) == "a b "
    assert outcomes(cut.value.attempts) == [("primary", "error", "server"), ("primary", "error", "connection")]
    assert backup.calls == 0


# --- regressions found while writing these tests --------------------------------------------


def test_no_wait_for_a_retry_the_attempt_limit_forbids(clock) -> None:
    only = fake("only", Fail("rate_limit", status=429, retry_after=2.0))
    with pytest.raises(ChainFailed):
        make_chain(clock, only, policy=POLICY.model_copy(update={"max_attempts": 1})).complete(REQUEST)
    assert sum(clock.slept) == 0 and only.calls == 1


def test_no_wait_for_a_retry_an_open_breaker_forbids(clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1), clock=clock)
    primary = ChainMember(fake("primary", Fail("rate_limit", status=429, retry_after=3.0)), price=FREE, breaker=breaker)
    done = make_chain(clock, primary, fake("backup")).complete(REQUEST)
    assert done.provider == "backup" and sum(clock.slept) == 0


def test_an_unknown_window_keeps_what_a_known_one_taught(clock) -> None:
    small = fake("small", context_window=8)  # LONG needs 14 tokens
    unknown = fake("unknown", Fail("context_length", status=400))
    smaller = fake("smaller", context_window=4)
    large = fake("large", context_window=64)
    done = make_chain(clock, small, unknown, smaller, large).complete(LONG)
    assert done.provider == "large" and smaller.calls == 0
    assert ("smaller", "skipped", "context_length") in outcomes(done.attempts)
