"""Metric names a suite may list, and scoring one answered item with them.

Names: `exact_match`, `token_f1`, `rouge_l`, `label_accuracy`, `citation_validity`,
`citation_precision`, `citation_recall`, and the ranking metrics over the answer's sources
(documents in the order shown to the model) with a cut-off: `hit@k`, `recall@k`,
`precision@k`, `mrr@k`, `ndcg@k`, `map@k`; with local models, `answer_similarity` and
`source_support` (`ragline.eval.model_metrics`); `judge_correctness`, an LLM judge
(`ragline.eval.judge`); `leakage_rate`, what the item's principal got but may not read
(`ragline.eval.leakage`; the harness scores it, added to any suite with a principal). An
item that failed to answer scores `error(kind)` on every metric, so it counts against
coverage instead of vanishing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ragline.eval import answer_metrics as am
from ragline.eval import metrics as rm
from ragline.eval.datasets import EvalItem
from ragline.eval.judge import JUDGE_METRIC
from ragline.eval.leakage import LEAKAGE_METRIC
from ragline.eval.model_metrics import MODEL_METRICS, ModelJudges
from ragline.eval.scores import Score
from ragline.models import Answer

_ANSWER_METRICS: dict[str, Callable[[EvalItem, Answer, Sequence[str]], Score]] = {
    "exact_match": lambda item, answer, labels: am.exact_match(answer.text, item.reference_answer),
    "token_f1": lambda item, answer, labels: am.token_f1(answer.text, item.reference_answer),
    "rouge_l": lambda item, answer, labels: am.rouge_l(answer.text, item.reference_answer),
    "label_accuracy": lambda item, answer, labels: am.label_accuracy(answer.text, item.label, labels),
    "citation_validity": lambda item, answer, labels: am.citation_validity(answer.text, len(answer.sources)),
    "citation_precision": lambda item, answer, labels: am.citation_precision(
        [c.document_id for c in answer.citations], item.relevant_document_ids
    ),
    "citation_recall": lambda item, answer, labels: am.citation_recall(
        [c.document_id for c in answer.citations], item.relevant_document_ids
    ),
}
_RANKING_METRICS = {
    "hit": rm.hit_at_k, "recall": rm.recall_at_k, "precision": rm.precision_at_k,
    "mrr": rm.mrr_at_k, "ndcg": rm.ndcg_at_k, "map": rm.average_precision,
}  # fmt: skip
_HARNESS_METRICS = (JUDGE_METRIC, LEAKAGE_METRIC)  # scored by the harness, not here
_CUT = re.compile(r"^(?P<name>[a-z]+)@(?P<k>[1-9]\d{0,3})$")


def check_metric_names(names: Sequence[str]) -> None:
    unknown = [
        n for n in names if n not in _ANSWER_METRICS and n not in MODEL_METRICS and n not in _HARNESS_METRICS
        and not ((m := _CUT.match(n)) and m["name"] in _RANKING_METRICS)
    ]  # fmt: skip
    if unknown:
        known = [*_ANSWER_METRICS, *MODEL_METRICS, *_HARNESS_METRICS, *(f"{name}@k" for name in _RANKING_METRICS)]
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")


def score_item(
    item: EvalItem, answer: Answer, names: Sequence[str], labels: Sequence[str], judges: ModelJudges | None = None
) -> dict[str, Score]:
    ranking = [source.document_id for source in answer.sources]
    scores: dict[str, Score] = {}
    for name in names:
        if name in _HARNESS_METRICS:
            continue  # the harness scores these: an async model call, and the item's viewer
        if name in _ANSWER_METRICS:
            scores[name] = _ANSWER_METRICS[name](item, answer, labels)
        elif name in MODEL_METRICS:
            scores[name] = (judges or ModelJudges(None, None)).score(name, item, answer)
        else:
            cut = _CUT.match(name)
            assert cut is not None  # check_metric_names ran when the suite loaded
            scores[name] = _RANKING_METRICS[cut["name"]](ranking, item.relevant_document_ids, int(cut["k"]))
    return scores


def failed_item(names: Sequence[str], kind: str) -> dict[str, Score]:
    return {name: Score.error(kind) for name in names}
