"""Retries and fallbacks across a chain of providers, in one loop.

Every try counts against one attempt limit and one deadline, so falling back never restarts
the retry budget (LiteLLM's fallback does). Which errors retry the same provider and which
fall back to the next is a typed policy over `ErrorKind`: 400/401/403 fail at once unless
configured, a context-length error skips to a provider with a larger window. Every try is
recorded as an `Attempt` on the result; each one first reserves its worst-case cost with the
budget and passes the provider's circuit breaker.

Streaming may fall back only until the first token reaches the caller; a failure after that
raises `StreamInterrupted` carrying the partial text, never a silent switch mid-answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from ragline.llm.base import (
    ChatRequest,
    Completion,
    ErrorKind,
    LLMProvider,
    ProviderError,
    StreamChunk,
    StreamInterrupted,
)
from ragline.llm.breaker import CircuitBreaker
from ragline.llm.budget import Budget, Reservation
from ragline.llm.pricing import Price, worst_case_usage
from ragline.llm.streams import StreamRecorder
from ragline.models import Attempt, Usage

TRANSIENT: frozenset[ErrorKind] = frozenset({"rate_limit", "server", "timeout", "connection", "malformed"})
# Failures after which the provider may have done (and billed) the work: charged at worst case.
MAYBE_BILLED: frozenset[ErrorKind] = frozenset({"timeout", "connection", "malformed"})


_query_deadline: ContextVar[float | None] = ContextVar("ragline_query_deadline", default=None)


@contextmanager
def deadline(seconds: float | None, *, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Bound every chain call inside (all LLM steps of one query) by one shared deadline;
    nested scopes can only shorten it."""
    if seconds is None:
        yield
        return
    outer = _query_deadline.get()
    ends = clock() + seconds
    token = _query_deadline.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _query_deadline.reset(token)


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(6, ge=1, description="Provider calls in total, across the whole chain.")
    retries_per_provider: int = Field(2, ge=0, description="Extra tries of one provider before falling back.")
    backoff_base: float = Field(0.5, ge=0, description="First backoff in seconds; doubles per retry, full jitter.")
    backoff_max: float = Field(8.0, ge=0, description="Longest wait before a retry (Retry-After included); longer waits fall back instead.")
    deadline: float | None = Field(120.0, gt=0, description="Seconds for the whole call, retries and fallbacks included.")
    retry_on: set[ErrorKind] = Field(default_factory=lambda: set(TRANSIENT))
    fallback_on: set[ErrorKind] = Field(default_factory=lambda: set(TRANSIENT) | {"context_length"})


@dataclass
class ChainMember:
    provider: LLMProvider
    price: Price = field(default_factory=Price)
    timeout: float | None = None  # per call; None: the provider's own
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    @property
    def name(self) -> str:
        return self.provider.name


class ChainFailed(ProviderError):
    """No provider of the chain answered within the policy; `attempts` says what each did."""

    def __init__(self, message: str, *, attempts: list[Attempt], last: ProviderError | None, kind: ErrorKind):
        super().__init__(message, provider="chain", status=last.status if last else None, kind=kind)
        self.attempts = attempts


class ModelChain(LLMProvider):
    """An `LLMProvider` over several: the first healthy one answers."""

    name = "chain"

    def __init__(
        self,
        members: list[ChainMember],
        policy: RetryPolicy | None = None,
        budget: Budget | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if not members:
            raise ValueError("a model chain needs at least one provider")
        self.members = members
        self.policy = policy or RetryPolicy()
        self.budget = budget or Budget()
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep, self._asleep = sleep, asleep  # backoff waits; tests inject a fake clock's

    @property
    def model(self) -> str:
        return self.members[0].provider.model

    @property
    def identity(self) -> str:
        """Names the chain for cache keys: providers and models, never credentials."""
        return "chain(" + ",".join(f"{m.name}/{m.provider.model}" for m in self.members) + ")"

    @property
    def context_window(self) -> int | None:
        windows = [m.provider.context_window for m in self.members if m.provider.context_window]
        return max(windows) if windows else None

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        run = _Run(self, request, timeout)
        while (attempt := run.next()) is not None:
            try:
                completion = attempt.member.provider.complete(request, timeout=attempt.timeout)
            except ProviderError as error:
                self._sleep(run.failed(attempt, error))
                continue
            except BaseException:
                run.abandon(attempt)
                raise
            return run.succeeded(attempt, completion)
        raise run.exhausted()

    async def acomplete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        run = _Run(self, request, timeout)
        while (attempt := run.next()) is not None:
            try:
                completion = await attempt.member.provider.acomplete(request, timeout=attempt.timeout)
            except ProviderError as error:
                await self._asleep(run.failed(attempt, error))
                continue
            except BaseException:
                run.abandon(attempt)
                raise
            return run.succeeded(attempt, completion)
        raise run.exhausted()

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        run = _Run(self, request, timeout)
        while (attempt := run.next()) is not None:
            try:
                for chunk in attempt.member.provider.stream(request, timeout=attempt.timeout):
                    if attempt.take(chunk):
                        yield chunk
            except ProviderError as error:
                if attempt.text:
                    raise run.interrupted(attempt, error) from None
                self._sleep(run.failed(attempt, error))
                continue
            except BaseException:  # includes the consumer closing the stream early
                run.abandon(attempt)
                raise
            yield run.stream_done(attempt)
            return
        raise run.exhausted()

    async def astream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[StreamChunk]:
        run = _Run(self, request, timeout)
        while (attempt := run.next()) is not None:
            try:
                async for chunk in attempt.member.provider.astream(request, timeout=attempt.timeout):
                    if attempt.take(chunk):
                        yield chunk
            except ProviderError as error:
                if attempt.text:
                    raise run.interrupted(attempt, error) from None
                await self._asleep(run.failed(attempt, error))
                continue
            except BaseException:
                run.abandon(attempt)
                raise
            yield run.stream_done(attempt)
            return
        raise run.exhausted()

    def close(self) -> None:
        for member in self.members:
            member.provider.close()

    async def aclose(self) -> None:
        for member in self.members:
            await member.provider.aclose()


@dataclass
class _Try:
    member: ChainMember
    reservation: Reservation
    timeout: float | None
    started: float
    received: StreamRecorder = field(default_factory=StreamRecorder)

    @property
    def text(self) -> str:
        return self.received.text

    def take(self, chunk: StreamChunk) -> bool:
        """Keep a streamed chunk; True when it is a text delta for the caller."""
        self.received.take(chunk)
        return bool(chunk.delta)


class _Run:
    """The state of one call through the chain: where it is, what it tried, what is left."""

    def __init__(self, chain: ModelChain, request: ChatRequest, timeout: float | None):
        self.chain, self.request, self.policy = chain, request, chain.policy
        now = chain._clock()
        ends = [now + t for t in (timeout, self.policy.deadline) if t is not None]
        scope = _query_deadline.get()
        self.deadline = min(ends + ([scope] if scope is not None else []), default=None)
        self.index = 0
        self.tries_here = 0
        self.calls = 0
        self.min_window: int | None = None
        self.attempts: list[Attempt] = []
        self.last_error: ProviderError | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.chain._clock()

    def next(self) -> _Try | None:
        """The next provider to call, with its budget reserved; None when the chain is spent."""
        members = self.chain.members
        while self.index < len(members) and self.calls < self.policy.max_attempts:
            member = members[self.index]
            window = member.provider.context_window
            if self.min_window is not None and window is not None and window <= self.min_window:
                self._skip(member, "context_length", f"context window {window} is not larger than {self.min_window}")
                continue
            remaining = self.remaining()
            if remaining is not None and remaining <= 0:
                raise self._failure("the deadline passed", "timeout")
            if not member.breaker.allow():
                self._skip(member, "circuit_open", "circuit breaker open")
                continue
            try:
                reservation = self.chain.budget.reserve(
                    member.price.cost(worst_case_usage(member.provider, self.request))
                )
            except BaseException:
                member.breaker.release()
                raise
            self.calls += 1
            timeouts = [t for t in (member.timeout, remaining) if t is not None]
            return _Try(member, reservation, min(timeouts) if timeouts else None, self.chain._clock())
        return None

    def succeeded(self, attempt: _Try, completion: Completion) -> Completion:
        cost = self._finish(attempt, completion.usage)
        return completion.model_copy(
            update={"provider": attempt.member.name, "cost_usd": cost, "attempts": list(self.attempts)}
        )

    def stream_done(self, attempt: _Try) -> StreamChunk:
        final = attempt.received.final
        usage = final.usage or Usage(completion_tokens=len(attempt.received.pieces))
        cost = self._finish(attempt, usage)
        return final.model_copy(
            update={
                "usage": usage, "model": final.model or attempt.member.provider.model,
                "provider": attempt.member.name, "cost_usd": cost, "attempts": list(self.attempts),
            }
        )  # fmt: skip

    def failed(self, attempt: _Try, error: ProviderError) -> float:
        """Record the failure; the seconds to wait before the next try, or raise the error
        when the policy neither retries nor falls back on its kind."""
        self._record_failure(attempt, error)
        retry_possible = (  # never wait for a retry that the attempt limit or an open breaker forbids
            error.kind in self.policy.retry_on and self.tries_here < self.policy.retries_per_provider
            and self.calls < self.policy.max_attempts and attempt.member.breaker.state != "open"
        )  # fmt: skip
        if retry_possible:
            delay = self._backoff(error.retry_after)
            remaining = self.remaining()
            if delay <= self.policy.backoff_max and (remaining is None or delay < remaining):
                self.tries_here += 1
                return delay
        if error.kind in self.policy.fallback_on:
            window = attempt.member.provider.context_window
            if error.kind == "context_length" and window is not None:  # an unknown window teaches nothing
                self.min_window = max(window, self.min_window or 0)
            self._advance()
            return 0.0
        error.attempts = list(self.attempts)  # type: ignore[attr-defined]
        raise error

    def interrupted(self, attempt: _Try, error: ProviderError) -> StreamInterrupted:
        self._record_failure(attempt, error)
        interrupted = StreamInterrupted(
            f"{attempt.member.name} failed after streaming {len(attempt.received.pieces)} pieces ({error}); "
            "the partial answer is in .partial_text",
            provider=attempt.member.name, status=error.status, kind=error.kind, partial_text=attempt.text,
        )  # fmt: skip
        interrupted.attempts = list(self.attempts)  # type: ignore[attr-defined]
        return interrupted

    def abandon(self, attempt: _Try) -> None:
        """The caller stopped (cancelled, closed the stream): charge the worst case, no verdict."""
        self.chain.budget.settle(attempt.reservation, attempt.reservation.amount)
        attempt.member.breaker.release()

    def exhausted(self) -> ChainFailed:
        kind = self.last_error.kind if self.last_error else "circuit_open"
        return self._failure("no provider answered", kind)

    def _finish(self, attempt: _Try, usage: Usage) -> float:
        cost = attempt.member.price.cost(usage)
        self.chain.budget.settle(attempt.reservation, cost)
        attempt.member.breaker.record_success()
        self._record(attempt.member, "ok", latency=self.chain._clock() - attempt.started, cost=cost)
        return cost

    def _record_failure(self, attempt: _Try, error: ProviderError) -> None:
        charged = attempt.reservation.amount if error.kind in MAYBE_BILLED else 0.0
        self.chain.budget.settle(attempt.reservation, charged)
        if error.kind in TRANSIENT:
            attempt.member.breaker.record_failure()
        else:
            attempt.member.breaker.release()
        self.last_error = error
        self._record(
            attempt.member, "error", kind=error.kind, error=str(error), status=error.status,
            latency=self.chain._clock() - attempt.started, cost=charged,
        )  # fmt: skip

    def _skip(self, member: ChainMember, kind: ErrorKind, reason: str) -> None:
        self._record(member, "skipped", kind=kind, error=reason)
        self._advance()

    def _advance(self) -> None:
        self.index += 1
        self.tries_here = 0

    def _record(self, member: ChainMember, outcome, *, kind=None, error=None, status=None, latency=0.0, cost=0.0):
        self.attempts.append(
            Attempt(
                provider=member.name, model=member.provider.model, outcome=outcome, error_kind=kind,
                error=error, status=status, latency_ms=round(latency * 1000, 3), cost_usd=cost,
            )
        )  # fmt: skip

    def _backoff(self, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.policy.backoff_max, self.policy.backoff_base * 2**self.tries_here)
        return self.chain._rng.uniform(0, ceiling)  # full jitter

    def _failure(self, reason: str, kind: ErrorKind) -> ChainFailed:
        tried = "; ".join(
            f"{a.provider}: {a.outcome} {a.error_kind or ''}{f' (HTTP {a.status})' if a.status else ''}".strip()
            for a in self.attempts
        )
        return ChainFailed(
            f"{reason} after {self.calls} calls [{tried or 'none tried'}]",
            attempts=list(self.attempts), last=self.last_error, kind=kind,
        )  # fmt: skip
