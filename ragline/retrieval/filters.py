"""Parse the `Filters` format (see store.py) once, so both stores map the same conditions.

Each store turns these conditions into its own engine's types; validation and error messages
live here so a filter means the same thing (or fails the same way) on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, TypeVar

from ragline.access.principals import READERS_FIELD

T = TypeVar("T")

RANGE_OPS = ("gte", "gt", "lte", "lt")


@dataclass(frozen=True)
class Match:
    key: str
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: list[str] | list[int]


@dataclass(frozen=True)
class NumberRange:
    key: str
    bounds: dict[str, float]  # op (gte/gt/lte/lt) -> bound


@dataclass(frozen=True)
class DatetimeRange:
    key: str
    bounds: dict[str, datetime]  # op -> timezone-aware bound (naive input is taken as UTC)


@dataclass(frozen=True)
class Exists:
    """`exists=True`: the field holds a non-null, non-empty value; missing, null and [] are absent."""

    key: str
    exists: bool


Condition = Match | MatchAny | NumberRange | DatetimeRange | Exists


def parse_filters(filters: dict[str, Any] | None) -> list[Condition]:
    """One condition per key (all must hold); ValueError naming the key for anything else."""
    return [_parse(key, value) for key, value in (filters or {}).items()]


def engine_filter(
    filters: dict[str, Any] | None, condition: Callable[[Condition], Any], make: Callable[..., T],
    readers: Collection[str] | None = None,
) -> T | None:
    """`filters` as an engine's Filter(must=..., must_not=...), `condition` mapping each one;
    None when there is nothing to filter. `exists: True` is "not IsEmpty" (missing, null
    and [] are empty), so it goes to must_not.

    `readers` (a caller's effective principals; None: unrestricted) adds "the chunk's
    readers include one of these" to `must`, beside the caller's own conditions (a caller's
    filter on the readers field only narrows further)."""
    conditions = parse_filters(filters)
    if readers is not None:
        if not readers:
            raise ValueError("a restricted search needs at least one principal to match readers against")
        conditions.append(MatchAny(READERS_FIELD, sorted(readers)))
    if not conditions:
        return None
    positive = [c for c in conditions if isinstance(c, Exists) and c.exists]
    must = [condition(c) for c in conditions if c not in positive]
    return make(must=must or None, must_not=[condition(c) for c in positive] or None)


def _parse(key: str, value: Any) -> Condition:
    if isinstance(value, dict):
        return _parse_dict(key, value)
    if isinstance(value, (list, tuple, set, frozenset)):
        values = list(value)
        if not (all(isinstance(v, str) for v in values) or all(_is_int(v) for v in values)):
            raise ValueError(f"filter on {key!r}: any-of lists must hold only strings or only integers")
        return MatchAny(key, values)
    if isinstance(value, (str, int)):  # bool is an int
        return Match(key, value)
    hint = ' (use {"exists": False} for missing/null)' if value is None else " (use a range for floats)"
    raise ValueError(f"filter on {key!r}: exact match needs a string, integer or boolean, got {value!r}{hint}")


def _parse_dict(key: str, spec: dict[str, Any]) -> Condition:
    if set(spec) == {"exists"}:
        if not isinstance(spec["exists"], bool):
            raise ValueError(f"filter on {key!r}: 'exists' must be True or False")
        return Exists(key, spec["exists"])
    unknown = set(spec) - set(RANGE_OPS)
    if unknown or not spec:
        raise ValueError(
            f"filter on {key!r}: expected range operators {RANGE_OPS} or {{'exists': bool}}, got {sorted(spec)}"
        )
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec.values()):
        return NumberRange(key, {op: float(v) for op, v in spec.items()})
    try:
        return DatetimeRange(key, {op: _datetime(v) for op, v in spec.items()})
    except (TypeError, ValueError):
        raise ValueError(
            f"filter on {key!r}: range bounds must be all numbers or all ISO-8601 datetimes, got {spec!r}"
        ) from None


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
