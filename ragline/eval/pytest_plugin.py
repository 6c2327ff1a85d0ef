"""A pytest plugin: suite files named `test_*.suite.toml` (or `.suite.yaml`) run as tests,
one test per metric, each asserting the metric's floor (`[gate] floors`) or, without one,
that the metric scored at least `[gate] min_coverage` of the items. With
`--ragline-per-item`, one test per dataset item instead: an item fails when it could not be
answered or when a metric with a floor scored below it (a missing score counts against it).
A suite with principals also gets a `leakage_rate` test (per item: part of each item's),
failing on any leak unless `[gate] no_leaks = false`.

    pytest evals/ --ragline-store .ragline --ragline-config ragline.toml [--ragline-per-item]

The suite runs once per file, against the store and config given (the store's prompts and
models, so a prompt edit changes what the tests see); the run is stored like any other.
Registered through the `pytest11` entry point; it does nothing for other files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUFFIXES = (".suite.toml", ".suite.yaml", ".suite.yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ragline", "ragline eval suites")
    group.addoption("--ragline-store", default=None, help="Store directory the suites run against.")
    group.addoption("--ragline-config", default=None, help="ragline.toml for the suites (models, prompts).")
    group.addoption("--ragline-per-item", action="store_true", help="One test per dataset item, not per metric.")


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.name.startswith("test_") and file_path.name.endswith(SUFFIXES):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    def collect(self):
        from ragline.eval.datasets import load_dataset
        from ragline.eval.harness import metric_names
        from ragline.eval.suite import load_suite

        suite = load_suite(self.path)
        self._suite, self._run, self._items = suite, None, {}
        dataset = load_dataset(suite.dataset.path, suite.dataset.format, limit=suite.dataset.limit, name=suite.name)
        if self.config.option.ragline_per_item:
            for item in dataset.items:
                yield DatasetItem.from_parent(self, name=item.id, item_id=item.id)
        else:
            for metric in metric_names(suite, dataset):
                yield MetricItem.from_parent(self, name=metric, metric=metric)

    def result(self):
        """The suite's run, made on first use (one per file per session)."""
        if self._run is None:
            import ragline
            from ragline.eval.harness import run_suite

            options = self.config.option
            with ragline.open(options.ragline_store, config_file=options.ragline_config) as rag:
                self._run, items = run_suite(rag, self._suite)
            self._items = {item.item_id: item for item in items}
        return self._suite, self._run

    def item_result(self, item_id: str):
        self.result()
        return self._items[item_id]


class _SuiteTest(pytest.Item):
    """Reports a failed threshold as one line, not a traceback."""

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MetricFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


class MetricItem(_SuiteTest):
    def __init__(self, *, metric: str, **kwargs):
        super().__init__(**kwargs)
        self.metric = metric

    def runtest(self) -> None:
        from ragline.eval.leakage import LEAKAGE_METRIC, leak_reasons

        suite, run = self.parent.result()
        summary = run.metrics[self.metric]
        floor = suite.gate.floors.get(self.metric)
        if self.metric == LEAKAGE_METRIC:
            reasons = leak_reasons(self.parent._items.values()) if suite.gate.no_leaks else []
            if reasons:
                raise MetricFailure(f"{reasons[0]} (run {run.run_id})")
        elif floor is not None:
            if summary.mean is None or summary.mean < floor:
                raise MetricFailure(f"{self.metric}: mean {summary.mean} below the floor {floor} (run {run.run_id})")
        elif summary.coverage < suite.gate.min_coverage:
            raise MetricFailure(
                f"{self.metric}: scored {summary.coverage:.0%} of the items, below {suite.gate.min_coverage:.0%} (run {run.run_id})"
            )

    def reportinfo(self):
        return self.path, None, f"{self.parent.path.name}::{self.metric}"


class DatasetItem(_SuiteTest):
    def __init__(self, *, item_id: str, **kwargs):
        super().__init__(**kwargs)
        self.item_id = item_id

    def runtest(self) -> None:
        from ragline.eval.leakage import LEAKAGE_METRIC

        suite, run = self.parent.result()
        result = self.parent.item_result(self.item_id)
        if result.error:
            raise MetricFailure(f"item {self.item_id}: not answered ({result.error}) (run {run.run_id})")
        below = []
        if suite.gate.no_leaks and result.leaked_chunks:
            below.append(f"{LEAKAGE_METRIC}: got {', '.join(result.leaked_chunks[:10])}, which "
                         f"{', '.join(result.principals)} may not read")  # fmt: skip
        for metric, floor in suite.gate.floors.items():
            score = result.scores.get(metric)
            if score is None or not score.ok or score.value < floor:
                shown = f"{score.value:.3f}" if score is not None and score.ok else (score.status if score else "missing")
                below.append(f"{metric} {shown} < {floor}")
        if below:
            raise MetricFailure(f"item {self.item_id}: {'; '.join(below)} (run {run.run_id})")

    def reportinfo(self):
        return self.path, None, f"{self.parent.path.name}::{self.item_id}"


class MetricFailure(AssertionError):
    """A metric below its floor: reported as one line, not a traceback."""
