"""`[eval]`: where suites live and which prompt label is the baseline a change is gated on."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ragline.settings import Section


class EvalConfig(Section):
    suites_dir: Path = Field(Path("evals"), description="Suite files (.toml, .yaml) that `ragline eval changed` runs.")
    baseline: str = Field("production", description="The prompt label a changed prompt is gated against.")
