"""`Score`: what every eval metric returns for one item. A value in [0, 1], or `undefined`
with a reason (nothing to measure against, an unparsable judge reply), or `error` with the
kind of failure (a timeout, a provider error). Never NaN: one NaN poisons a run's mean,
and "could not score" must count against a metric's coverage, not vanish from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Status = Literal["ok", "undefined", "error"]


class Score(BaseModel):
    model_config = {"frozen": True}

    status: Status = "ok"
    value: float | None = Field(None, description="In [0, 1] when status is ok; None otherwise.")
    reason: str | None = Field(None, description="Why there is no value (undefined) or what failed (error).")

    @model_validator(mode="after")
    def _consistent(self) -> Score:
        if self.status == "ok":
            if self.value is None or not math.isfinite(self.value) or not 0.0 <= self.value <= 1.0:
                raise ValueError(f"an ok score needs a finite value in [0, 1], got {self.value!r}")
        elif self.value is not None or not self.reason:
            raise ValueError(f"a{'n' if self.status == 'error' else ''} {self.status} score has no value and needs a reason")
        return self

    @classmethod
    def of(cls, value: float) -> Score:
        return cls(value=value)

    @classmethod
    def undefined(cls, reason: str) -> Score:
        return cls(status="undefined", reason=reason)

    @classmethod
    def error(cls, kind: str) -> Score:
        return cls(status="error", reason=kind)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ratio(numerator: float, denominator: float, *, undefined_reason: str) -> Score:
    """numerator / denominator as a score; a zero denominator is undefined, never 0 or NaN."""
    return Score.of(min(1.0, max(0.0, numerator / denominator))) if denominator else Score.undefined(undefined_reason)


class Aggregate(BaseModel):
    """A metric over a run: the mean of the scored items and the share of items scored."""

    mean: float | None
    scored: int
    items: int
    coverage: float
    undefined: int
    errors: int


def aggregate(scores: Sequence[Score] | Iterable[Score]) -> Aggregate:
    scores = list(scores)
    values = [s.value for s in scores if s.ok and s.value is not None]
    return Aggregate(
        mean=sum(values) / len(values) if values else None,
        scored=len(values),
        items=len(scores),
        coverage=len(values) / len(scores) if scores else 0.0,
        undefined=sum(s.status == "undefined" for s in scores),
        errors=sum(s.status == "error" for s in scores),
    )
