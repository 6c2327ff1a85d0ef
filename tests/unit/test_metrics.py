"""Ranking metrics: trec_eval's definitions, and the bugs peers shipped (scores above 1 from
duplicate ids, an IDCG over more than k documents, 0 where nothing can be measured)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragline.eval.metrics import average_precision, hit_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k
from ragline.eval.scores import Score, aggregate

METRICS = [ndcg_at_k, recall_at_k, precision_at_k, hit_at_k, mrr_at_k, average_precision]


def test_ndcg_perfect_and_partial():
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "x"], qrels).value == pytest.approx(1.0)
    # relevant at ranks 2 and 3: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], qrels).value == pytest.approx(expected)


def test_ndcg_graded_cutoff_and_ideal_of_k_documents():
    qrels = {"a": 2, "b": 1}
    assert ndcg_at_k(["b", "a"], qrels).value < ndcg_at_k(["a", "b"], qrels).value
    assert ndcg_at_k(["x", "a"], qrels, k=1).value == 0.0
    many = {f"d{i}": 1 for i in range(20)}
    assert ndcg_at_k(["d0", "d1", "d2"], many, k=3).value == pytest.approx(1.0)  # IDCG from min(|relevant|, k)


def test_duplicates_count_once():
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "a", "a"], qrels).value <= 1.0
    assert ndcg_at_k(["a", "a", "b"], qrels).value == pytest.approx(ndcg_at_k(["a", "b"], qrels).value)
    assert precision_at_k(["a", "a"], qrels, k=2).value == 0.5
    assert average_precision(["a", "a", "b"], qrels).value == pytest.approx(1.0)


def test_recall_precision_hit_mrr_map():
    qrels = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "x"], qrels, k=10).value == 0.5
    assert recall_at_k(["x", "b", "a"], qrels, k=2).value == 0.5
    assert precision_at_k(["x", "b", "a"], qrels, k=2).value == 0.5
    assert hit_at_k(["x", "c"], qrels, k=2).value == 0.0 and hit_at_k(["x", "b"], qrels, k=2).value == 1.0
    assert mrr_at_k(["c", "x", "b"], qrels).value == pytest.approx(1 / 3)
    assert mrr_at_k([f"x{i}" for i in range(10)] + ["a"], qrels, k=10).value == 0.0
    assert average_precision(["a", "x", "b"], qrels).value == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("metric", METRICS)
def test_nothing_relevant_is_undefined_not_zero(metric):
    for qrels in ({}, {"a": 0}):
        score = metric(["a", "b"], qrels, 3)
        assert score.status == "undefined" and score.value is None and "relevant" in score.reason


ids = st.sampled_from(list("abcdefgh"))


@settings(max_examples=300, derandomize=True, database=None)
@given(run=st.lists(ids, max_size=12), qrels=st.dictionaries(ids, st.integers(-1, 3), max_size=8), k=st.integers(1, 12))
def test_every_metric_is_in_bounds_or_undefined_never_nan(run, qrels, k):
    for metric in METRICS:
        score = metric(run, qrels, k)
        assert isinstance(score, Score)
        if score.ok:
            assert 0.0 <= score.value <= 1.0 and not math.isnan(score.value)
        else:
            assert score.value is None and score.reason


def test_aggregate_counts_coverage_and_never_averages_a_missing_score():
    scores = [Score.of(1.0), Score.of(0.0), Score.undefined("no reference"), Score.error("timeout")]
    summary = aggregate(scores)
    assert summary.mean == 0.5 and summary.coverage == 0.5 and (summary.undefined, summary.errors) == (1, 1)
    assert aggregate([]).mean is None and aggregate([]).coverage == 0.0


def test_a_score_cannot_hold_nan_or_leave_its_range():
    for bad in (float("nan"), float("inf"), -0.1, 1.5):
        with pytest.raises(ValueError):
            Score.of(bad)
    with pytest.raises(ValueError):
        Score(status="undefined")  # a reason is required
