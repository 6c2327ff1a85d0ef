"""The LLM judge on a scripted model: a parsable verdict is its score, anything else is
undefined(parse_error) with the raw reply kept, a provider failure is error(kind)."""

import asyncio

import pytest

from ragline.eval.judge import JUDGE_PROMPT, Judge, parse_verdict
from ragline.llm.fake import Fail, FakeProvider
from ragline.pipelines.prompts import builtin_prompt


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"score": 0.8, "reason": "same facts"}', 0.8),
    ('Sure! Here it is: {"score": 1, "reason": "ok"} hope that helps', 1.0),
    ('{"reason": "no score"} then {"score": 0}', 0.0),
])  # fmt: skip
def test_parsable_verdicts(reply, expected):
    assert parse_verdict(reply).value == expected


@pytest.mark.parametrize("reply", ["", "The answer is correct.", '{"score": 1.7}', '{"score": "high"}',
                                   '{"score": true}', "{not json}", '{"score": NaN}'])  # fmt: skip
def test_unparsable_verdicts_are_undefined_never_zero(reply):
    score = parse_verdict(reply)
    assert score.status == "undefined" and score.reason == "parse_error" and score.value is None


def _judge(*script) -> Judge:
    return Judge(llm=FakeProvider(list(script)), prompt=builtin_prompt(JUDGE_PROMPT))


def test_the_judge_keeps_every_raw_reply_and_renders_its_versioned_prompt():
    judge = _judge('{"score": 0.5, "reason": "half"}', "I refuse to grade.")
    first = asyncio.run(judge.score("a", "Q?", "A.", "R."))
    second = asyncio.run(judge.score("b", "Q?", "A.", "R."))
    assert first.value == 0.5 and second.reason == "parse_error"
    assert judge.raw == {"a": '{"score": 0.5, "reason": "half"}', "b": "I refuse to grade."}
    sent = judge.llm.requests[0]
    assert sent.prompt_version.startswith("judge_correctness@") and "REFERENCE: R." in sent.messages[-1].content


def test_a_failing_judge_is_an_error_and_no_reference_is_undefined():
    judge = _judge(Fail("timeout"))
    assert asyncio.run(judge.score("a", "Q?", "A.", "R.")).reason == "timeout"
    assert asyncio.run(judge.score("b", "Q?", "A.", None)).status == "undefined"
    assert judge.llm.calls == 1  # no reference: no call
