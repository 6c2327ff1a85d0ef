"""A query pipeline: a name and the list of steps it runs, loadable from YAML, TOML or JSON.

    name: guarded
    steps:
      - kind: rewrite
        strategy: multi_query
      - kind: parallel
        branches:
          - [{kind: retrieve, mode: dense}]
          - [{kind: retrieve, mode: sparse}]
      - kind: branch
        when: {kind: no_hits}
        then: [{kind: respond, text: "Nothing in the documents answers this."}]
      - kind: rerank
      - kind: synthesize

`Pipeline.from_dict(p.to_dict()) == p` for every pipeline, and a file written by `dump`
loads back identical. Runs go through `Rag.run_pipeline` (sync) or `Rag.arun_pipeline`.

"default" is built from the config (`default_pipeline`) and is what `Rag.query` runs.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragline.pipelines.config import QueryConfig
from ragline.pipelines.steps import Diversify, Rerank, Retrieve, StepSpec, Synthesize
from ragline.retrieval.config import RetrievalConfig
from ragline.retrieval.retriever import first_stage_depth
from ragline.retrieval.store import Filters
from ragline.settings import problems

SUFFIXES = (".yaml", ".yml", ".toml", ".json")
MAX_PIPELINE_BYTES = 256 * 1024  # hand-written pipelines are a few KiB; anything this big is a mistake


class PipelineError(ValueError):
    """A pipeline file is missing or invalid; the message names the file and the field."""


class _AliasFound(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        self.line = line


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader refusing anchors and aliases: nested aliases expand exponentially (a
    "billion laughs" of a few hundred bytes hangs validation), and pipelines never need them."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _AliasFound(event.start_mark.line + 1)
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value shared by two steps out twice, so `dump`'s files load back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1)

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults: the file a person would write."""
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        return data | {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "pipeline") -> Pipeline:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PipelineError(f"invalid pipeline in {where}: {problems(exc)}") from None

    def dump(self, path: Path) -> None:
        data = self.to_dict()
        if path.suffix == ".json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        elif path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False))
        else:
            raise PipelineError(f"cannot write {path}: pipelines are written as .yaml or .json")


def default_pipeline(
    settings: RetrievalConfig, query: QueryConfig, *, top_k: int | None = None, filters: Filters | None = None
) -> Pipeline:
    """What `Rag.query` runs: the stages of `Retriever.retrieve` with the same depths and
    settings (rerank and fusion, MMR as configured), then the answer from the best `top_k`.
    Built from the settings alone, so a cached answer needs no model loaded."""
    top_k = top_k or query.top_k
    rerank, mmr = settings.rerank != "none", settings.mmr
    steps: list[Any] = [Retrieve(top_k=first_stage_depth(settings, top_k, rerank=rerank, mmr=mmr), filters=filters,
                                 with_vectors=mmr)]  # fmt: skip
    if rerank:
        steps.append(Rerank(top_n=settings.rerank_depth, fusion=settings.rerank_fusion))
    if mmr:
        steps.append(Diversify(top_n=settings.rerank_depth, mmr_lambda=settings.mmr_lambda))
    steps.append(Synthesize(top_k=top_k))
    return Pipeline(name="default", description="Retrieve, rerank, answer with citations.", steps=steps)


def load_pipeline(path: Path) -> Pipeline:
    if path.stem == "default" and path.suffix in SUFFIXES:
        raise PipelineError(f"{path}: 'default' is the built-in query path and cannot be redefined; rename the file")
    if not path.is_file():
        raise PipelineError(f"pipeline file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_PIPELINE_BYTES:
        raise PipelineError(f"pipeline file {path} is {size} bytes; the limit is {MAX_PIPELINE_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=NoAliasLoader)
    except _AliasFound as exc:
        raise PipelineError(f"{path}, line {exc.line}: anchors and aliases are not allowed in pipeline files") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read pipeline file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"pipeline file {path} must hold a mapping with `name` and `steps`")
    data.setdefault("name", path.stem)
    return Pipeline.from_dict(data, where=str(path))


def find_pipeline(name: str, folder: Path) -> Pipeline:
    """`name` from `folder` (NAME.yaml/.yml/.toml/.json). "default" is built in: ask the
    caller's `default_pipeline` for it."""
    if name == "default":
        raise PipelineError("'default' is built in, not a file: use default_pipeline (or Rag.get_pipeline)")
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return load_pipeline(candidate)
    known = sorted({p.stem for s in SUFFIXES for p in folder.glob(f"*{s}")}) if folder.is_dir() else []
    raise PipelineError(f"no pipeline {name!r} in {folder} (known: {', '.join(known) or 'none'}; built in: default)")
