"""`judge_correctness`: an LLM judge (any configured provider, the local llama.cpp one
included) grades each answer against its reference, replying in JSON. A reply that does not
parse is `undefined(parse_error)` with the raw text kept on the item, never a silent 0 or
NaN; a provider failure is `error(kind)`. The judge prompt is versioned like every prompt,
and its version is part of the run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ragline.eval.scores import Score
from ragline.llm.base import ChatRequest, LLMProvider, ProviderError
from ragline.llm.budget import BudgetExceeded
from ragline.pipelines.prompts import Prompt

JUDGE_METRIC = "judge_correctness"
JUDGE_PROMPT = "judge_correctness"
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


@dataclass
class Judge:
    llm: LLMProvider
    prompt: Prompt
    max_tokens: int = 96
    raw: dict[str, str] = field(default_factory=dict)  # item id -> the judge's reply, parsed or not

    async def score(self, item_id: str, question: str, answer: str, reference: str | None) -> Score:
        if not reference or not reference.strip():
            return Score.undefined("no reference answer")
        request = ChatRequest(
            messages=self.prompt.render(question=question, answer=answer, reference=reference),
            max_tokens=self.max_tokens, temperature=0.0, prompt_version=self.prompt.version,
        )  # fmt: skip
        try:
            reply = (await self.llm.acomplete(request)).text
        except ProviderError as exc:
            return Score.error(exc.kind)
        except BudgetExceeded:
            return Score.error("budget")
        self.raw[item_id] = reply
        return parse_verdict(reply)


def parse_verdict(reply: str) -> Score:
    """The score of the first JSON object in `reply` with a numeric "score" in [0, 1]."""
    for candidate in _OBJECT.findall(reply):
        try:
            value = json.loads(candidate).get("score")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
            return Score.of(float(value))
    return Score.undefined("parse_error")
