"""A suite file (TOML or YAML): what to ask, through which pipeline, scored by which
metrics, and how a candidate must compare with its baseline. Unknown keys are errors naming
the file and the closest valid key, like every ragline config.

    name = "pubmedqa"
    [dataset]
    format = "pubmedqa"
    path = "../shared/data/pubmedqa-dev/pqal_dev.json"
    limit = 100
    [pipeline]
    name = "default"
    [metrics]
    names = ["token_f1", "rouge_l", "hit@3", "citation_validity", "label_accuracy"]
    [gate]
    margin = 0.02
    # no_leaks = true   # the default: any item whose principal got a chunk it may not read fails

A relative dataset path is resolved against the suite file's folder first, then the
working directory.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from ragline.eval.datasets import Format
from ragline.eval.item_metrics import check_metric_names
from ragline.eval.leakage import LEAKAGE_METRIC
from ragline.pipelines.pipeline import NoAliasLoader
from ragline.settings import Section, problems

MAX_SUITE_BYTES = 256 * 1024


class SuiteError(ValueError):
    """A suite file is missing or invalid; the message names the file and the field."""


class DatasetSection(Section):
    format: Format = "jsonl"
    path: Path
    limit: int | None = Field(None, ge=1, description="The first N items, in file order.")


class PipelineSection(Section):
    name: str = Field("default", description="The default query path, or a pipeline file's name.")


class MetricsSection(Section):
    names: list[str] = Field(default_factory=lambda: ["token_f1", "rouge_l", "citation_validity"], min_length=1)

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        check_metric_names(names)
        return names


class GateSection(Section):
    margin: float = Field(0.02, ge=0.0, le=1.0, description="Non-inferiority margin on each metric's mean.")
    floors: dict[str, float] = Field(default_factory=dict, description="Metric -> lowest acceptable mean.")
    min_coverage: float = Field(
        0.8, ge=0.0, le=1.0, description="Below this share of answered items (no error) the run is a harness failure."
    )
    no_new_failures: bool = Field(False, description="Fail when an item that passed in the baseline fails now.")
    no_leaks: bool = Field(
        True, description="Fail when any item with a principal got a chunk it may not read (leakage_rate > 0), "
        "whatever the baseline, margin and floors.",
    )
    alpha: float = Field(0.05, gt=0.0, lt=1.0)

    @field_validator("floors")
    @classmethod
    def _no_leakage_floor(cls, floors: dict[str, float]) -> dict[str, float]:
        if LEAKAGE_METRIC in floors:
            raise ValueError(f"{LEAKAGE_METRIC} takes no floor: any leak fails the run (no_leaks, on by default)")
        return floors


class Suite(Section):
    name: str
    dataset: DatasetSection
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    gate: GateSection = Field(default_factory=GateSection)
    concurrency: int = Field(4, ge=1, le=64, description="Items answered at once.")
    budget_usd: float | None = Field(None, gt=0, description="Hard cost cap for one run.")


def load_suite(path: Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist")
    if path.stat().st_size > MAX_SUITE_BYTES:
        raise SuiteError(f"suite file {path} is larger than {MAX_SUITE_BYTES} bytes")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - safe, no aliases
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SuiteError(f"cannot read suite file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"suite file {path} must hold a mapping with name and [dataset]")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(f"invalid suite in {path}: {problems(exc)}") from None
    dataset_path = suite.dataset.path.expanduser()
    if not dataset_path.is_absolute() and (path.parent / dataset_path).exists():
        suite.dataset.path = (path.parent / dataset_path).resolve()
    return suite
