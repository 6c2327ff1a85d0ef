"""Paired statistics for comparing two runs of the same eval suite, item by item.

Both runs score the same items, so the comparison is paired: per-item deltas carry far less
noise than two independent means. Everything here is deterministic (every random procedure
takes a `seed` and uses `numpy.random.default_rng`), so re-running a comparison reproduces its
verdict, and every number returned is finite: a "could not compare" is a verdict with a reason,
never a NaN (see `ragline.eval.scores`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, model_validator

from ragline.eval.scores import Score

DEFAULT_SEED = 0
EXACT_PERMUTATION_MAX = 16  # 2**16 sign patterns: exact enumeration is cheaper than sampling
_EXACT_BINOMIAL_MAX = 20_000  # above this, exact big integers get slow (quadratic): use log space
_CHUNK = 1 << 20  # matrix cells per resampling chunk, so memory stays bounded for large suites


def _deltas(deltas: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(deltas, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("no paired deltas: nothing to test")
    if not np.all(np.isfinite(d)):
        raise ValueError("deltas must be finite")
    return d


def paired_values(
    baseline: Sequence[Score], candidate: Sequence[Score], *, missing_candidate_counts_as: float | None = 0.0
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Align two runs item by item. A pair whose baseline is not ok is dropped (nothing to
    compare against). A candidate that is not ok against an ok baseline counts as
    `missing_candidate_counts_as` (default 0: failing to score is a regression, so it must not
    vanish from the comparison), or the pair is dropped when that is None."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired runs need the same items: {len(baseline)} baseline vs {len(candidate)} candidate")
    fill = missing_candidate_counts_as
    if fill is not None and not (math.isfinite(fill) and 0.0 <= fill <= 1.0):
        raise ValueError(f"missing_candidate_counts_as must be in [0, 1] or None, got {fill!r}")
    kept = [i for i, (b, c) in enumerate(zip(baseline, candidate)) if b.ok and (c.ok or fill is not None)]
    base = np.asarray([baseline[i].value for i in kept], dtype=float)  # an ok Score always has a value
    cand = np.asarray([candidate[i].value if candidate[i].ok else fill for i in kept], dtype=float)
    return base, cand, kept


def bootstrap_ci(
    deltas: Sequence[float] | np.ndarray, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = DEFAULT_SEED
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean delta, resampling items (the pairs stay together).
    With one item or all-equal deltas every resample has the same mean: the CI is that point."""
    d = _deltas(deltas)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    mean = float(d.mean())
    if d.size == 1 or np.all(d == d[0]):
        return mean, mean
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // d.size)
    sizes = [min(rows, resamples - r) for r in range(0, resamples, rows)]
    means = np.concatenate([d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1) for m in sizes])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def permutation_p_value(
    deltas: Sequence[float] | np.ndarray, *, resamples: int = 10_000, seed: int = DEFAULT_SEED
) -> float:
    """Two-sided paired permutation test of mean delta == 0: under the null each pair's sign is
    a coin flip. Zero deltas are unchanged by a flip, so only the nonzero ones are permuted:
    exact enumeration when at most 16 are nonzero (the same p as enumerating all 2**n patterns),
    else Monte Carlo with the +1 correction, so p is never 0."""
    d = _deltas(deltas)
    d = d[d != 0.0]
    if d.size == 0:
        return 1.0
    observed = abs(float(d.sum()))
    tol = 1e-9 * float(np.abs(d).sum())  # sign patterns that tie the observed sum must count as ties
    if d.size <= EXACT_PERMUTATION_MAX:
        patterns = ((np.arange(1 << d.size)[:, None] >> np.arange(d.size)) & 1) * 2.0 - 1.0
        return float(np.mean(np.abs(patterns @ d) >= observed - tol))
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // d.size)
    hits = 0
    for r in range(0, resamples, rows):
        signs = rng.integers(0, 2, size=(min(rows, resamples - r), d.size)) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (resamples + 1)


def _binom_two_sided_exact(n: int, k: int) -> float:
    """2 * P(X <= k) for X ~ Binomial(n, 1/2), with exact integers (k <= n / 2)."""
    term = math.comb(n, k)
    total = term
    for i in range(k, 0, -1):  # C(n, i-1) = C(n, i) * i / (n - i + 1), exactly
        term = term * i // (n - i + 1)
        total += term
    p = 2 * total / (1 << n)  # int / int is correctly rounded however large the integers are
    return min(1.0, p) if p > 0.0 else math.ulp(0.0)


def _binom_two_sided_log(n: int, k: int) -> float:
    """The same in log space for large n: the tail is C(n, k) times a fast-converging sum."""
    lead = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    ratio, total = 1.0, 1.0
    for i in range(k, 0, -1):
        ratio *= i / (n - i + 1)
        total += ratio
        if ratio < 1e-17 * total:
            break
    log_p = math.log(2.0) + lead + math.log(total) - n * math.log(2.0)
    return 1.0 if log_p >= 0.0 else max(math.exp(log_p), math.ulp(0.0))


def mcnemar_p_value(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """Exact two-sided McNemar test for a 0/1 metric: only discordant pairs carry information,
    and under the null each is equally likely to go either way (Binomial(b + c, 1/2))."""
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if base.shape != cand.shape:
        raise ValueError("McNemar needs paired arrays of the same length")
    if (base.size and not is_binary(base)) or (cand.size and not is_binary(cand)):
        raise ValueError("McNemar needs binary (0/1) values")
    lost = int(np.count_nonzero((base == 1.0) & (cand == 0.0)))
    gained = int(np.count_nonzero((base == 0.0) & (cand == 1.0)))
    n, k = lost + gained, min(lost, gained)
    if n == 0:
        return 1.0
    return _binom_two_sided_exact(n, k) if n <= _EXACT_BINOMIAL_MAX else _binom_two_sided_log(n, k)


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is exactly 0 or 1 (an empty array is not: there is nothing to test)."""
    v = np.asarray(values, dtype=float)
    return bool(v.size) and bool(np.all((v == 0.0) | (v == 1.0)))


# Acklam's rational approximation of the inverse normal CDF (relative error < 1.15e-9),
# refined by one Halley step against math.erfc to near machine precision.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def normal_quantile(p: float) -> float:
    """z such that P(Z <= z) = p for a standard normal Z (numpy has no ppf, and no scipy here)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"the normal quantile needs p in (0, 1), got {p!r}")
    if p < 0.02425 or p > 1.0 - 0.02425:
        q = math.sqrt(-2.0 * math.log(min(p, 1.0 - p)))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
        x = x if p < 0.5 else -x
    else:
        q = p - 0.5
        r = q * q
        x = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q / (
            ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
        )
    if abs(x) > 37.0:  # exp(x * x / 2) would overflow; Acklam alone is within 1.15e-9 here
        return x
    e = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def minimum_detectable_effect(
    deltas: Sequence[float] | np.ndarray, *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """The smallest mean delta a paired test of this many items would detect with `power`:
    (z_{1-alpha/2} + z_power) * sd / sqrt(n). Says whether "no significant change" means "no
    change" or "too few items to tell". None when n < 2 (no spread to estimate)."""
    d = np.asarray(deltas, dtype=float).ravel()
    if d.size < 2:
        return None
    d = _deltas(d)
    sd = float(d.std(ddof=1))
    return (normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power)) * sd / math.sqrt(d.size)


Verdict = Literal["better", "worse", "no significant change", "undefined"]


class Comparison(BaseModel):
    """One metric, baseline vs candidate. With verdict "undefined" (no pairs) the numbers are
    None and `reason` says why; otherwise every number is finite."""

    metric: str
    items: int
    baseline_mean: float | None
    candidate_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: Literal["permutation", "mcnemar"] | None
    mde: float | None
    verdict: Verdict
    reason: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Comparison:
        numbers = (self.baseline_mean, self.candidate_mean, self.delta, self.ci_low, self.ci_high, self.p_value)
        if self.verdict == "undefined":
            if not self.reason or any(x is not None for x in numbers) or self.items:
                raise ValueError("an undefined comparison has no pairs, no numbers and needs a reason")
        elif any(x is None or not math.isfinite(x) for x in numbers) or self.test is None or not self.items:
            raise ValueError("a defined comparison needs pairs, finite numbers and a test")
        elif not 0.0 < self.p_value <= 1.0 or (self.mde is not None and not math.isfinite(self.mde)):
            raise ValueError(f"p must be in (0, 1] and the MDE finite, got p={self.p_value!r}, mde={self.mde!r}")
        return self


def compare_metric(
    metric: str,
    baseline: Sequence[Score],
    candidate: Sequence[Score],
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    seed: int = DEFAULT_SEED,
    resamples: int = 10_000,
) -> Comparison:
    """Paired comparison of one metric. The verdict needs both p < alpha and a CI that excludes
    0 on the same side, so the test and the interval cannot disagree about the direction."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    base, cand, kept = paired_values(baseline, candidate)
    if not kept:
        reason = "no baseline item has a score to compare against" if baseline else "no items"
        none = dict.fromkeys(("baseline_mean", "candidate_mean", "delta", "ci_low", "ci_high", "p_value", "mde"))
        return Comparison(metric=metric, items=0, test=None, verdict="undefined", reason=reason, **none)
    deltas = cand - base
    low, high = bootstrap_ci(deltas, confidence=1.0 - alpha, resamples=resamples, seed=seed)
    binary = is_binary(base) and is_binary(cand)
    p = mcnemar_p_value(base, cand) if binary else permutation_p_value(deltas, resamples=resamples, seed=seed)
    up, down = (low > 0.0, high < 0.0) if higher_is_better else (high < 0.0, low > 0.0)
    verdict: Verdict = "better" if p < alpha and up else "worse" if p < alpha and down else "no significant change"
    return Comparison(
        metric=metric, items=len(kept), baseline_mean=float(base.mean()), candidate_mean=float(cand.mean()),
        delta=float(deltas.mean()), ci_low=low, ci_high=high, p_value=p, test="mcnemar" if binary else "permutation",
        mde=minimum_detectable_effect(deltas, alpha=alpha), verdict=verdict,
    )


def _passes(score: Score, threshold: float) -> bool:
    return score.ok and score.value is not None and score.value >= threshold


def flips(
    baseline: Sequence[Score], candidate: Sequence[Score], *, threshold: float = 0.5
) -> tuple[list[int], list[int]]:
    """(regressions, improvements): items that passed and now fail, and the reverse. The mean
    can hide both; these are the items to read. A not-ok candidate fails; an item whose
    baseline is not ok is skipped, as in `paired_values` (nothing to compare against)."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired runs need the same items: {len(baseline)} baseline vs {len(candidate)} candidate")
    regressions, improvements = [], []
    for i, (b, c) in enumerate(zip(baseline, candidate)):
        if not b.ok:
            continue
        if _passes(b, threshold) and not _passes(c, threshold):
            regressions.append(i)
        elif not _passes(b, threshold) and _passes(c, threshold):
            improvements.append(i)
    return regressions, improvements


def _items(repeats: Sequence[Sequence[Score]]) -> int:
    sizes = {len(run) for run in repeats}
    if len(sizes) > 1:
        raise ValueError(f"repeated runs need the same items, got sizes {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def flaky_items(repeats: Sequence[Sequence[Score]], *, threshold: float = 0.5) -> list[int]:
    """Items whose pass/fail differs between repeats of the same suite (a not-ok score fails):
    their flips between two runs are noise, not a change."""
    n = _items(repeats)
    if len(repeats) < 2:
        return []
    return [i for i in range(n) if len({_passes(run[i], threshold) for run in repeats}) > 1]


def flip_rate(repeats: Sequence[Sequence[Score]], threshold: float = 0.5) -> float:
    """The share of items that flip between repeats; 0.0 with fewer than 2 repeats or no items."""
    n = _items(repeats)
    return len(flaky_items(repeats, threshold=threshold)) / n if n and len(repeats) >= 2 else 0.0


def per_item_variance(repeats: Sequence[Sequence[Score]]) -> list[float | None]:
    """Sample variance (ddof=1) of each item's ok values across repeats; None with fewer than 2."""
    n = _items(repeats)
    out: list[float | None] = []
    for i in range(n):
        values = [run[i].value for run in repeats if run[i].ok and run[i].value is not None]
        out.append(float(np.var(values, ddof=1)) if len(values) >= 2 else None)
    return out
