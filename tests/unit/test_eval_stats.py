"""Paired run-vs-run statistics: the verdicts on clear and null cases, exact tests checked
against hand computation and brute force, determinism, the handling of unscored items, and
that nothing ever comes back NaN."""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ragline.eval.scores import Score
from ragline.eval.stats import (
    Comparison,
    _binom_two_sided_exact,
    _binom_two_sided_log,
    bootstrap_ci,
    compare_metric,
    flaky_items,
    flip_rate,
    flips,
    is_binary,
    mcnemar_p_value,
    minimum_detectable_effect,
    normal_quantile,
    paired_values,
    per_item_variance,
    permutation_p_value,
)

FAST = 2_000  # resamples: enough for these effect sizes, and quick


def scores(values) -> list[Score]:
    return [Score.of(float(v)) for v in values]


def shifted(n: int = 60, shift: float = 0.3, seed: int = 7) -> tuple[list[Score], list[Score]]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.6, n)
    cand = np.clip(base + shift + rng.normal(0.0, 0.1, n), 0.0, 1.0)
    return scores(base), scores(cand)


def assert_finite(c: Comparison) -> None:
    for name, value in c.model_dump().items():
        if isinstance(value, float):
            assert math.isfinite(value), name


# --- verdicts -------------------------------------------------------------------------


def test_clearly_better_candidate():
    base, cand = shifted()
    c = compare_metric("faithfulness", base, cand, resamples=FAST)
    assert c.verdict == "better" and c.test == "permutation" and c.items == 60
    assert c.p_value < 0.01 and 0.0 < c.ci_low < c.delta < c.ci_high
    assert c.delta == pytest.approx(0.3, abs=0.05)
    assert c.delta == pytest.approx(c.candidate_mean - c.baseline_mean)
    assert c.mde is not None and 0.0 < c.mde < c.delta
    assert_finite(c)


def test_clearly_worse_candidate_and_lower_is_better():
    base, cand = shifted()
    worse = compare_metric("faithfulness", cand, base, resamples=FAST)
    assert worse.verdict == "worse" and worse.p_value < 0.01 and worse.ci_high < 0.0
    # for a metric where lower is better (a hallucination rate), the same drop is an improvement
    assert compare_metric("hallucination", cand, base, higher_is_better=False, resamples=FAST).verdict == "better"
    assert compare_metric("hallucination", base, cand, higher_is_better=False, resamples=FAST).verdict == "worse"


def test_identical_runs_are_no_change_with_p_one_and_a_point_ci():
    base, _ = shifted()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare_metric("m", base, base, resamples=FAST)
    assert c.verdict == "no significant change"
    assert c.p_value == 1.0 and (c.ci_low, c.ci_high) == (0.0, 0.0) and c.delta == 0.0
    assert c.mde == 0.0
    assert_finite(c)


def test_small_noisy_difference_is_no_significant_change():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.8, 20)
    cand = np.clip(base + rng.normal(0.0, 0.2, 20), 0, 1)
    c = compare_metric("m", scores(base), scores(cand), resamples=FAST)
    assert c.verdict == "no significant change" and c.p_value >= 0.05
    assert c.ci_low < 0.0 < c.ci_high


def test_empty_or_unscorable_baseline_is_undefined_with_a_reason():
    for base, cand in ([], []), ([Score.undefined("no reference")] * 3, scores([1, 0, 1])):
        c = compare_metric("m", base, cand)
        assert c.verdict == "undefined" and c.reason and c.items == 0
        assert c.p_value is None and c.delta is None and c.ci_low is None and c.mde is None
    with pytest.raises(ValueError):
        compare_metric("m", scores([1]), scores([1, 0]))
    with pytest.raises(ValueError):
        compare_metric("m", scores([1]), scores([1]), alpha=0.0)


def test_comparison_model_rejects_nan_and_half_defined_results():
    good = compare_metric("m", *shifted(n=10), resamples=200).model_dump()
    with pytest.raises(ValidationError):
        Comparison(**{**good, "delta": math.nan})
    with pytest.raises(ValidationError):
        Comparison(**{**good, "p_value": 0.0})
    with pytest.raises(ValidationError):
        Comparison(**{**good, "verdict": "undefined", "reason": "x"})


def test_same_seed_same_result_and_the_seed_is_used():
    base, cand = shifted(n=30, shift=0.05)
    one = compare_metric("m", base, cand, seed=11, resamples=FAST)
    two = compare_metric("m", base, cand, seed=11, resamples=FAST)
    assert one.model_dump() == two.model_dump()
    deltas = np.array([b.value - c.value for b, c in zip(base, cand)])
    assert bootstrap_ci(deltas, seed=1, resamples=500) == bootstrap_ci(deltas, seed=1, resamples=500)
    assert bootstrap_ci(deltas, seed=1, resamples=500) != bootstrap_ci(deltas, seed=2, resamples=500)
    assert permutation_p_value(deltas, seed=1, resamples=500) == permutation_p_value(deltas, seed=1, resamples=500)


# --- pairing ----------------------------------------------------------------------------


def test_missing_candidate_counts_as_zero_and_undefined_baseline_drops_the_pair():
    base = [Score.of(0.8), Score.undefined("no reference"), Score.of(0.6), Score.of(0.4)]
    cand = [Score.of(0.9), Score.of(1.0), Score.error("timeout"), Score.undefined("unparsable judge reply")]
    b, c, kept = paired_values(base, cand)
    assert kept == [0, 2, 3] and b.tolist() == [0.8, 0.6, 0.4] and c.tolist() == [0.9, 0.0, 0.0]
    b, c, kept = paired_values(base, cand, missing_candidate_counts_as=None)
    assert kept == [0] and b.tolist() == [0.8] and c.tolist() == [0.9]
    _, c, _ = paired_values(base, cand, missing_candidate_counts_as=0.5)
    assert c.tolist() == [0.9, 0.5, 0.5]
    comparison = compare_metric("m", base, cand, resamples=200)
    assert comparison.items == 3 and comparison.candidate_mean == pytest.approx(0.3)
    with pytest.raises(ValueError):
        paired_values(base, cand[:2])
    with pytest.raises(ValueError):
        paired_values(base, cand, missing_candidate_counts_as=math.nan)


def test_is_binary():
    assert is_binary(np.array([0.0, 1.0, 1.0])) and is_binary(np.array([1.0]))
    assert not is_binary(np.array([0.0, 0.5])) and not is_binary(np.array([]))


# --- McNemar ----------------------------------------------------------------------------


def test_mcnemar_matches_the_hand_computed_binomial_and_is_chosen_for_binary_data():
    # 1 item lost, 9 gained, 10 concordant: p = 2 * (C(10,0) + C(10,1)) / 2**10
    base = np.array([1.0] + [0.0] * 9 + [1.0] * 5 + [0.0] * 5)
    cand = np.array([0.0] + [1.0] * 9 + [1.0] * 5 + [0.0] * 5)
    expected = 2 * (math.comb(10, 0) + math.comb(10, 1)) / 2**10
    assert mcnemar_p_value(base, cand) == expected == 22 / 1024
    assert mcnemar_p_value(cand, base) == expected  # two-sided
    c = compare_metric("exact_match", scores(base), scores(cand), resamples=FAST)
    assert c.test == "mcnemar" and c.p_value == expected and c.verdict == "better" and c.ci_low > 0.0
    # a missing candidate score counts as 0, so the data stay binary
    with_missing = scores(base)[:3], [Score.error("timeout"), *scores(cand)[1:3]]
    assert compare_metric("exact_match", *with_missing, resamples=200).test == "mcnemar"


def test_mcnemar_edge_cases():
    assert mcnemar_p_value(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 1.0  # no discordant pairs
    assert mcnemar_p_value(np.array([]), np.array([])) == 1.0
    assert mcnemar_p_value(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0  # b == c
    assert mcnemar_p_value(np.array([1.0]), np.array([0.0])) == 1.0
    with pytest.raises(ValueError):
        mcnemar_p_value(np.array([0.5]), np.array([1.0]))
    with pytest.raises(ValueError):
        mcnemar_p_value(np.array([1.0]), np.array([1.0, 0.0]))


@pytest.mark.parametrize("lost,gained", [(0, 3), (1, 9), (2, 5), (4, 4), (3, 10)])
def test_mcnemar_equals_the_exact_sign_flip_test_on_binary_data(lost, gained):
    base = np.array([1.0] * lost + [0.0] * gained + [1.0, 0.0])
    cand = np.array([0.0] * lost + [1.0] * gained + [1.0, 0.0])
    assert mcnemar_p_value(base, cand) == pytest.approx(permutation_p_value(cand - base), rel=1e-12)


def test_mcnemar_large_n_neither_overflows_nor_loses_accuracy():
    for n, k in [(2_000, 0), (2_000, 500), (2_000, 960), (2_000, 1_000), (20_000, 9_800)]:
        assert _binom_two_sided_log(n, k) == pytest.approx(_binom_two_sided_exact(n, k), rel=1e-9)
    big = 25_000  # past the exact-integer range: the log-space path
    lost, gained = 12_400, 12_600
    p = mcnemar_p_value(np.array([1.0] * lost + [0.0] * gained), np.array([0.0] * lost + [1.0] * gained))
    z = (abs(gained - lost) - 1) / math.sqrt(big)  # normal approximation with continuity correction
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-2)
    tiny = mcnemar_p_value(np.zeros(big), np.ones(big))  # 2 / 2**25000 underflows a float
    assert 0.0 < tiny < 1e-300
    assert 0.0 < mcnemar_p_value(np.zeros(5_000), np.ones(5_000)) < 1e-300  # exact path, same clamp


# --- permutation --------------------------------------------------------------------------


def brute_force_p(tenths: list[int]) -> float:
    """Two-sided sign-flip p over all 2**n patterns, in exact rational arithmetic."""
    d = [Fraction(t, 10) for t in tenths]
    observed = abs(sum(d))
    patterns = list(itertools.product((-1, 1), repeat=len(d)))
    return sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed for signs in patterns) / len(patterns)


@pytest.mark.parametrize(
    "tenths",
    [[3, 1, -2, 4, 0, 2, 1, -1, 3, 2], [1, 1, 1, -1, -1, 2, 2, -3, 0, 0, 5, -2], [2], [-4, 4], [1, 2, 3, 4, 5, 6]],
)
def test_exact_permutation_matches_brute_force(tenths):
    assert permutation_p_value(np.array(tenths) / 10) == pytest.approx(brute_force_p(tenths), abs=1e-12)


def test_exact_permutation_at_sixteen_and_zeros_do_not_matter():
    tenths = [3, -1, 2, 5, -2, 1, 4, 1, -3, 2, 2, 1, -1, 6, 0, 2]  # n = 16: 65,536 patterns
    d = np.array(tenths) / 10
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=16)))
    expected = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9)
    assert permutation_p_value(d) == pytest.approx(expected, abs=1e-12)
    # 30 items of which 10 are nonzero: still exact, and the same p as the nonzero ones alone
    sparse = np.array([0.1, -0.2, 0.3, 0.3, 0.1, 0.2, -0.1, 0.4, 0.2, 0.1] + [0.0] * 20)
    assert permutation_p_value(sparse) == pytest.approx(brute_force_p([1, -2, 3, 3, 1, 2, -1, 4, 2, 1]), abs=1e-12)


def test_monte_carlo_permutation_has_the_plus_one_correction():
    all_up = np.full(40, 0.5)  # only the all-plus / all-minus patterns reach the observed sum
    assert permutation_p_value(all_up, resamples=1_000) == 1 / 1_001
    assert permutation_p_value(np.zeros(40)) == 1.0
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.2, 40)
    p = permutation_p_value(noise, resamples=FAST)
    assert 0.0 < p <= 1.0 and p > 0.01
    with pytest.raises(ValueError):
        permutation_p_value([])


# --- bootstrap ----------------------------------------------------------------------------


def test_bootstrap_ci_degenerate_cases_and_coverage_of_the_mean():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, math.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([0.25]) == (0.25, 0.25)
        low, high = bootstrap_ci([0.1] * 7)
        assert low == high == pytest.approx(0.1)
    d = np.random.default_rng(2).normal(0.1, 0.3, 100)
    low, high = bootstrap_ci(d, resamples=FAST)
    assert low < d.mean() < high
    narrow = bootstrap_ci(d, confidence=0.5, resamples=FAST)
    assert low < narrow[0] < narrow[1] < high


# --- MDE and the normal quantile ----------------------------------------------------------


def test_minimum_detectable_effect_shrinks_with_n_and_needs_two_items():
    pattern = [-0.2, 0.1, 0.3, 0.0, 0.2, -0.1]
    mdes = [minimum_detectable_effect(np.tile(pattern, k)) for k in (1, 4, 16, 64)]
    assert all(a > b for a, b in itertools.pairwise(mdes))
    d = np.tile(pattern, 4)
    expected = (1.959963984540054 + 0.8416212335729143) * d.std(ddof=1) / math.sqrt(d.size)
    assert minimum_detectable_effect(d) == pytest.approx(expected, rel=1e-12)
    assert minimum_detectable_effect(d, alpha=0.01) > minimum_detectable_effect(d)
    assert minimum_detectable_effect(d, power=0.9) > minimum_detectable_effect(d)
    assert minimum_detectable_effect([0.3]) is None and minimum_detectable_effect([]) is None


@pytest.mark.parametrize(
    "p,z",
    [
        (0.975, 1.959963984540054),
        (0.025, -1.959963984540054),
        (0.8, 0.8416212335729143),
        (0.5, 0.0),
        (0.95, 1.6448536269514722),
        (0.99, 2.3263478740408408),
        (0.999, 3.090232306167813),
        (0.0005, -3.2905267314918945),
    ],
)
def test_normal_quantile_known_values(p, z):
    assert abs(normal_quantile(p) - z) < 1e-9


def test_normal_quantile_round_trips_through_the_cdf():
    for p in [1e-12, 1e-6, 0.001, 0.02, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97575, 0.98, 0.999999]:
        z = normal_quantile(p)
        assert 0.5 * math.erfc(-z / math.sqrt(2)) == pytest.approx(p, rel=1e-9)
        assert normal_quantile(1 - p) == pytest.approx(-z, rel=1e-6, abs=1e-9)
    assert math.isfinite(normal_quantile(1e-320))
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            normal_quantile(bad)


# --- flips and flakiness ------------------------------------------------------------------


def test_flips_regressions_and_improvements():
    base = [Score.of(0.9), Score.of(0.2), Score.of(0.8), Score.of(0.1), Score.undefined("no reference"), Score.of(0.7)]
    cand = [Score.of(0.3), Score.of(0.6), Score.error("timeout"), Score.of(0.2), Score.of(0.9), Score.of(0.5)]
    assert flips(base, cand) == ([0, 2], [1])  # the undefined baseline (4) is skipped; 0.5 still passes
    assert flips(base, cand, threshold=0.6) == ([0, 2, 5], [1])  # 0.6 >= 0.6 passes
    assert flips(cand, base) == ([1, 4], [0])  # the error baseline (2) is skipped; 0.9 -> undefined fails
    with pytest.raises(ValueError):
        flips(base, cand[:1])


def test_flaky_items_and_flip_rate():
    runs = [
        [Score.of(0.9), Score.of(0.8), Score.of(0.1), Score.of(0.7)],
        [Score.of(1.0), Score.of(0.3), Score.undefined("judge"), Score.error("timeout")],
        [Score.of(0.6), Score.of(0.9), Score.of(0.2), Score.of(0.8)],
    ]
    assert flaky_items(runs) == [1, 3]
    assert flip_rate(runs) == 0.5
    assert flaky_items(runs, threshold=0.95) == [0]
    assert flaky_items(runs[:1]) == [] and flip_rate(runs[:1]) == 0.0 and flip_rate([]) == 0.0
    with pytest.raises(ValueError):
        flaky_items([runs[0], runs[1][:2]])


def test_per_item_variance():
    runs = [
        [Score.of(0.2), Score.of(0.5), Score.of(0.3), Score.error("timeout")],
        [Score.of(0.4), Score.of(0.5), Score.undefined("judge"), Score.error("timeout")],
        [Score.of(0.6), Score.of(0.5), Score.undefined("judge"), Score.of(1.0)],
    ]
    variance = per_item_variance(runs)
    assert variance[0] == pytest.approx(0.04) and variance[1] == 0.0
    assert variance[2] is None and variance[3] is None
    assert per_item_variance([]) == []


# --- never NaN ----------------------------------------------------------------------------

score = st.one_of(
    st.floats(0.0, 1.0).map(Score.of),
    st.sampled_from([0.0, 1.0]).map(Score.of),
    st.sampled_from([Score.undefined("no reference"), Score.error("timeout")]),
)
binary_score = st.one_of(st.sampled_from([0.0, 1.0]).map(Score.of), st.just(Score.error("timeout")))
paired_runs = st.one_of(st.integers(0, 16), st.integers(17, 60)).flatmap(  # exact and Monte Carlo paths
    lambda n: st.sampled_from([score, score, binary_score]).flatmap(
        lambda s: st.tuples(st.lists(s, min_size=n, max_size=n), st.lists(s, min_size=n, max_size=n))
    )
)


@settings(derandomize=True, database=None, max_examples=100, deadline=None)
@given(paired_runs, st.booleans())
def test_compare_metric_is_never_nan(runs, higher_is_better):
    base, cand = runs
    c = compare_metric("m", base, cand, higher_is_better=higher_is_better, resamples=200)
    assert_finite(c)
    if c.verdict == "undefined":
        assert c.reason and c.items == 0 and c.p_value is None
        assert not any(b.ok for b in base)
    else:
        assert 0.0 < c.p_value <= 1.0 and c.ci_low <= c.ci_high and c.items >= 1
        assert c.items == sum(b.ok for b in base)
        assert c.delta == pytest.approx(c.candidate_mean - c.baseline_mean, abs=1e-12)
        assert -1.0 - 1e-12 <= c.ci_low and c.ci_high <= 1.0 + 1e-12
        if c.verdict == "better":
            assert (c.delta > 0) == higher_is_better
