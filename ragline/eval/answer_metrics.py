"""Deterministic answer metrics for one item: agreement with the reference answer (exact
match, token F1, ROUGE-L), label accuracy, citation validity and citation precision /
recall against the relevant documents, and abstention detection.

Text is normalised the SQuAD way (lower case, no punctuation, no articles, single spaces)
before comparing. Each metric returns a `Score`: `undefined` when there is nothing to
compare with (no reference, no label, no citation), never NaN and never a silent 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from ragline.eval.scores import Score, ratio
from ragline.pipelines.synthesis import NO_SOURCES_ANSWER, cited_numbers

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# What an answer says when it declines: ragline's own no-sources answer and the phrasings
# small and large models use for "the sources do not say".
_ABSTENTION = re.compile(
    r"\b(i (do not|don't|cannot|can't) (know|find|answer|tell)|not (found|mentioned|stated|specified|provided|"
    r"available|covered) in the (sources|documents|context|text)|the (sources|documents|context) (do not|don't) "
    r"(say|mention|contain|specify|provide)|no (information|answer|relevant (information|document)s?) "
    r"(is |was )?(given|found|available|provided)|there is nothing to answer from)\b",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    lowered = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(lowered.split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def exact_match(answer: str, reference: str | None) -> Score:
    if not reference or not normalize(reference):
        return Score.undefined("no reference answer")
    return Score.of(1.0 if normalize(answer) == normalize(reference) else 0.0)


def token_f1(answer: str, reference: str | None) -> Score:
    """Harmonic mean of token precision and recall (SQuAD's F1, counting repeats)."""
    expected = tokens(reference or "")
    if not expected:
        return Score.undefined("no reference answer")
    common = sum((Counter(tokens(answer)) & Counter(expected)).values())
    if not common:
        return Score.of(0.0)
    precision, recall = common / len(tokens(answer)), common / len(expected)
    return Score.of(2 * precision * recall / (precision + recall))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, in O(len(a) * len(b)) time, O(len(b)) space."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, reference: str | None) -> Score:
    """ROUGE-L F-measure (beta = 1) over normalised tokens."""
    expected = tokens(reference or "")
    if not expected:
        return Score.undefined("no reference answer")
    produced = tokens(answer)
    common = _lcs(produced, expected)
    if not common:
        return Score.of(0.0)
    precision, recall = common / len(produced), common / len(expected)
    return Score.of(2 * precision * recall / (precision + recall))


def predicted_label(answer: str, labels: Sequence[str]) -> str | None:
    """The first of `labels` the answer says as a word ("Yes, ..." -> "yes"), if any."""
    found = [(m.start(), label) for label in labels if (m := re.search(rf"\b{re.escape(label)}\b", answer, re.IGNORECASE))]
    return min(found)[1] if found else None


def label_accuracy(answer: str, label: str | None, labels: Sequence[str]) -> Score:
    """1 when the answer's first label word is the item's label; an answer that names no
    label is wrong (0), an item without a label is undefined."""
    if not label:
        return Score.undefined("no label for this item")
    return Score.of(1.0 if predicted_label(answer, labels) == label.lower() else 0.0)


def citation_validity(answer: str, source_count: int) -> Score:
    """Share of the answer's [n] markers that name one of the `source_count` sources shown."""
    numbers = cited_numbers(answer)
    valid = sum(1 for n in numbers if 1 <= n <= source_count)
    return ratio(valid, len(numbers), undefined_reason="the answer cites nothing")


def citation_precision(cited_document_ids: Sequence[str], relevant: Mapping[str, int]) -> Score:
    """Share of the documents the answer cites that are relevant (grade above 0: a judged
    grade of 0 means "not relevant", as in BEIR qrels)."""
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    if not wanted:
        return Score.undefined("no relevant documents for this item")
    cited = set(cited_document_ids)
    return ratio(len(cited & wanted), len(cited), undefined_reason="the answer cites nothing")


def citation_recall(cited_document_ids: Sequence[str], relevant: Mapping[str, int]) -> Score:
    """Share of the relevance the answer cites: each relevant document weighs its grade, so
    citing the one highly relevant filing counts more than citing a marginal one (with
    binary grades, the share of relevant documents cited)."""
    weights = {doc: grade for doc, grade in relevant.items() if grade > 0}
    cited = weights.keys() & set(cited_document_ids)
    return ratio(sum(weights[d] for d in cited), sum(weights.values()),
                 undefined_reason="no relevant documents for this item")  # fmt: skip


def abstained(answer: str) -> bool:
    """Whether the answer declines ("not found in the sources"): its own outcome in a run,
    neither a correct nor a wrong answer."""
    return answer.strip() == NO_SOURCES_ANSWER or bool(_ABSTENTION.search(answer))
