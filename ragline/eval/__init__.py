"""Evaluation: `scores` (a value in [0, 1], or undefined / error with a reason: never NaN),
`metrics` (ranking metrics with trec_eval's definitions), `answer_metrics` (reference,
label and citation agreement, abstention), `retrieval` (the BEIR retrieval eval). Suites,
stored runs and the prompt-version gate build on these (issue #13)."""
