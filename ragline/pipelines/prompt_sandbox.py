"""The Jinja sandbox prompt files render in, with a budget for what one render may cost.

Jinja's sandbox keeps a template away from Python internals, not from spending CPU and
memory: two nested loops hang a query, `range(10**9)` or `10 ** (10 ** 9)` take the process
down. Here every loop iteration and every call is a step of a per-render budget (steps, not
seconds, so a render fails the same way on every machine); the values a template builds
(call, filter, `~` and `{% set %}` block results) are checked against a size limit, and the
operators that can blow a value up in one go (`+`, `*`, `**`) are checked before they run;
the output is counted as it is produced.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STEPS = 100_000  # loop iterations and calls per render; 1,000 sources take about 5,000
MAX_OUTPUT_CHARS = 1_000_000  # rendered characters (all blocks); also the longest value a template may build
MAX_INT_BITS = 4096  # the largest integer `*` and `**` may produce
_COUNTED, _SIZED = "ragline_counted", "ragline_sized"  # filters the compiler inserts
_SEQUENCES = (str, list, tuple)


class RenderLimit(SecurityError):
    """A render went over one of the limits above."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise RenderLimit(f"more than {MAX_STEPS} loop iterations and calls in one render (nested loops?)")

    def output(self, text: str) -> None:
        self.chars += len(text)
        if self.chars > MAX_OUTPUT_CHARS:
            raise RenderLimit(f"the rendered prompt is longer than {MAX_OUTPUT_CHARS} characters")


_BUDGET: ContextVar[_Budget] = ContextVar("ragline_prompt_budget")


def _sized(value: Any) -> Any:
    if isinstance(value, _SEQUENCES) and len(value) > MAX_OUTPUT_CHARS:
        raise RenderLimit(f"a value grew longer than {MAX_OUTPUT_CHARS} characters or items")
    return value


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _BUDGET.get().step()
        yield item


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        too_long = len(numbers) > MAX_RANGE
    except OverflowError:  # longer than sys.maxsize
        too_long = True
    if too_long:
        raise RenderLimit(f"range({', '.join(map(str, args))}) is longer than {MAX_RANGE} numbers")
    return numbers


def _sized_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marker
    def sized(*args: Any, **kwargs: Any) -> Any:
        return _sized(function(*args, **kwargs))

    return sized


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _too_big(operator: str, left: Any, right: Any) -> bool:
    """Whether `left operator right` would exceed the limits, judged before computing it."""
    if _is_int(left) and _is_int(right):
        if operator == "**":
            return right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS
        return operator == "*" and left.bit_length() + right.bit_length() > MAX_INT_BITS
    if operator == "*" and (_is_int(left) or _is_int(right)):
        sequence, times = (right, left) if _is_int(left) else (left, right)
        return isinstance(sequence, _SEQUENCES) and len(sequence) * times > MAX_OUTPUT_CHARS
    if operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        return len(left) + len(right) > MAX_OUTPUT_CHARS
    return False


class _Limited(NodeTransformer):
    """Rewrites a parsed template where the environment has no hook: each loop iterates
    through `_counted`; each `~` result and `{% set %}` block capture passes `_sized`."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _COUNTED, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        return nodes.Filter(self.generic_visit(node), _SIZED, [], [], None, None, lineno=node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.AssignBlock:
        node = self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, _SIZED, [], [], None, None, lineno=node.lineno)
        return node


class PromptEnvironment(SandboxedEnvironment):
    """The sandbox with the budget: calls counted, call and filter results sized, `range`
    bounded, `+ * **` checked before and `%` after they run."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.globals["range"] = _range
        self.filters = {name: _sized_filter(function) for name, function in self.filters.items()}
        self.filters[_COUNTED] = _counted
        self.filters[_SIZED] = _sized

    def compile_prompt(self, source: str) -> Template:
        return self.from_string(_Limited().visit(self.parse(source)))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _BUDGET.get().step()
        return _sized(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if _too_big(operator, left, right):
            raise RenderLimit(
                f"{operator!r} would build a value over the limits ({MAX_INT_BITS}-bit integers, "
                f"{MAX_OUTPUT_CHARS} characters or items)"
            )
        return _sized(super().call_binop(context, operator, left, right))


def render_blocks(template: Template, roles: Iterable[str], variables: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, text) per block, rendered under a fresh budget."""
    token = _BUDGET.set(budget := _Budget())
    try:
        context = template.new_context(dict(variables))
        rendered = []
        for role in roles:
            parts = []
            for part in template.blocks[role](context):
                budget.output(part)
                parts.append(part)
            rendered.append((role, "".join(parts)))
        return rendered
    finally:
        _BUDGET.reset(token)
