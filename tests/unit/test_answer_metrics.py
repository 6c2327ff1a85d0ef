"""Answer metrics against references, labels and citations: known values, undefined where
there is nothing to compare with, and never NaN or out of [0, 1] for any input."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragline.eval.answer_metrics import (
    abstained,
    citation_precision,
    citation_recall,
    citation_validity,
    exact_match,
    label_accuracy,
    normalize,
    rouge_l,
    token_f1,
)
from ragline.pipelines.synthesis import NO_SOURCES_ANSWER

LABELS = ("yes", "no", "maybe")


def test_reference_agreement_known_values():
    assert normalize("The  Answer, is: 25 days!") == "answer is 25 days"
    assert exact_match("25 days.", "25 Days").value == 1.0 and exact_match("26 days", "25 days").value == 0.0
    assert token_f1("25 days of leave", "25 days").value == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("nothing alike", "25 days").value == 0.0 and token_f1("", "25 days").value == 0.0
    # LCS of "a b c d" and "a c d e" is "a c d": P = 3/4, R = 3/4
    assert rouge_l("alpha beta gamma delta", "alpha gamma delta epsilon").value == pytest.approx(0.75)


@pytest.mark.parametrize("metric", [exact_match, token_f1, rouge_l])
def test_no_reference_is_undefined(metric):
    for reference in (None, "", "  ", "the a an", "?!"):
        assert metric("some answer", reference).status == "undefined"


def test_label_accuracy():
    assert label_accuracy("Yes, the trial showed a benefit (no adverse events).", "yes", LABELS).value == 1.0
    assert label_accuracy("Maybe; the evidence is mixed.", "no", LABELS).value == 0.0
    assert label_accuracy("The study is inconclusive.", "yes", LABELS).value == 0.0  # names no label: wrong
    assert label_accuracy("Yes.", None, LABELS).status == "undefined"
    assert label_accuracy("Nobody knows.", "no", LABELS).value == 0.0  # "Nobody" is not the word "no"


def test_citations():
    assert citation_validity("Leave is 25 days [1][2], see [7].", source_count=4).value == pytest.approx(2 / 3)
    assert citation_validity("No markers at all.", source_count=4).status == "undefined"
    assert citation_precision(["a", "b"], {"a": 1}).value == 0.5
    assert citation_recall(["a", "b"], {"a": 1, "c": 1}).value == 0.5
    assert citation_precision([], {"a": 1}).status == "undefined" and citation_recall(["a"], {}).status == "undefined"
    assert citation_precision(["a", "a"], {"a": 1}).value == 1.0  # a document cited twice counts once


def test_graded_citations():
    grades = {"main": 3, "marginal": 1, "judged-irrelevant": 0}
    assert citation_recall(["main"], grades).value == 0.75 and citation_recall(["marginal"], grades).value == 0.25
    assert citation_precision(["main", "judged-irrelevant"], grades).value == 0.5  # grade 0 is not relevant
    assert citation_recall(["x"], {"judged-irrelevant": 0}).status == "undefined"


def test_abstention():
    assert abstained(NO_SOURCES_ANSWER)
    assert abstained("This is not mentioned in the sources.") and abstained("I don't know.")
    assert not abstained("New employees get 25 days of paid leave [1].")


words = st.sampled_from(["a", "b", "the", "yes", "no", "[1]", "[9]", "!", "?", ",", "é", "\udcff", "", " "])
text = st.lists(words, max_size=12).map(" ".join)


@settings(max_examples=300, derandomize=True, database=None)
@given(answer=text, reference=st.one_of(st.none(), text), cited=st.lists(st.sampled_from("abc")),
       relevant=st.dictionaries(st.sampled_from("abc"), st.integers(0, 3)), sources=st.integers(0, 5))
def test_never_nan_never_out_of_range(answer, reference, cited, relevant, sources):
    scores = [
        exact_match(answer, reference), token_f1(answer, reference), rouge_l(answer, reference),
        label_accuracy(answer, reference, LABELS), citation_validity(answer, sources),
        citation_precision(cited, relevant), citation_recall(cited, relevant),
    ]  # fmt: skip
    for score in scores:
        assert (score.ok and 0.0 <= score.value <= 1.0 and not math.isnan(score.value)) or (
            not score.ok and score.value is None and score.reason
        )
