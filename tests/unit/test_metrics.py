import math

import pytest

from ragline.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_perfect_and_partial():
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "x"], qrels) == pytest.approx(1.0)
    # relevant at ranks 2 and 3: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], qrels) == pytest.approx(expected)


def test_ndcg_graded_and_cutoff():
    qrels = {"a": 2, "b": 1}
    assert ndcg_at_k(["b", "a"], qrels) < ndcg_at_k(["a", "b"], qrels)
    assert ndcg_at_k(["x", "a"], qrels, k=1) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0


def test_recall_and_mrr():
    qrels = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "x"], qrels, k=10) == 0.5
    assert recall_at_k(["x", "b", "a"], qrels, k=2) == 0.5
    assert mrr_at_k(["c", "x", "b"], qrels) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"] * 10 + ["a"], qrels, k=10) == 0.0
