"""Stored eval runs: `eval.sqlite` in the store directory. A run keeps everything needed to
trust a comparison later: the suite, the dataset's content hash, the hash of every setting
that shapes answers, every prompt version used, the models, ragline's version, and per
item the answer, its sources, citations and scores, and whom it asked as (with the chunks
that leaked to them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ragline.eval.scores import Score
from ragline.ingest.sqlite import connect, serialised

EVAL_FILE = "eval.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_suite ON runs (suite, created_at);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL, item_id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (run_id, item_id)
);
"""


class ItemResult(BaseModel):
    item_id: str
    question: str
    answer: str | None = None
    sources: list[str] = Field(default_factory=list, description="Document ids shown to the model, in order.")
    cited: list[str] = Field(default_factory=list)
    cited_texts: list[str] = Field(default_factory=list, description="The cited chunks' text (capped), for reports.")
    reference: str | None = Field(None, description="The dataset's reference answer, for reports.")
    abstained: bool = False
    error: str | None = Field(None, description="The failure kind when the item could not be answered.")
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    scores: dict[str, Score] = Field(default_factory=dict)
    judge_reply: str | None = Field(None, description="The LLM judge's raw reply, kept whether it parsed or not.")
    principals: list[str] = Field(default_factory=list, description="Who the item asked as (empty: unrestricted).")
    principals_hash: str | None = Field(
        None, description="`principals_hash` of them (None: unrestricted); part of the key `compare` pairs items by."
    )
    leaked_chunks: list[str] = Field(
        default_factory=list, description="Chunk ids returned that the principals may not read."
    )


class MetricSummary(BaseModel):
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    coverage: float


class RunRecord(BaseModel):
    run_id: str
    suite: str
    created_at: float = Field(default_factory=time.time)
    dataset_hash: str
    settings_hash: str
    prompt_versions: dict[str, str]
    models: list[str]
    ragline_version: str
    items: int
    answered: int = Field(description="Items answered without an error (timeouts, provider errors, budget).")
    metrics: dict[str, MetricSummary]
    cost_usd: float
    settings: dict[str, Any] = Field(default_factory=dict, description="What the settings hash covers.")
    repeat_group: str | None = Field(None, description="Runs of one `--repeat N` share it (the first run's id).")


class RunStore:
    def __init__(self, store_dir: Path):
        self.path = Path(store_dir) / EVAL_FILE
        self._db, self._lock = connect(
            self.path, SCHEMA, remedy="Move it away: stored eval runs are lost, new runs start a new file"
        )

    @serialised
    def save(self, run: RunRecord, items: list[ItemResult]) -> None:
        with self._db:
            self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run.run_id, run.suite, run.created_at, run.model_dump_json()))
            self._db.executemany(
                "INSERT INTO items VALUES (?, ?, ?)", [(run.run_id, i.item_id, i.model_dump_json()) for i in items]
            )

    @serialised
    def run(self, run_id: str) -> RunRecord:
        row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r[0] for r in self._db.execute("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 5")]
            raise KeyError(f"no eval run {run_id!r} in {self.path} (latest: {', '.join(known) or 'none'})")
        return RunRecord.model_validate_json(row[0])

    @serialised
    def items(self, run_id: str) -> dict[str, ItemResult]:
        rows = self._db.execute("SELECT item_id, record FROM items WHERE run_id = ?", (run_id,))
        return {item_id: ItemResult.model_validate_json(record) for item_id, record in rows}

    @serialised
    def runs(self, suite: str | None = None) -> list[RunRecord]:
        """Newest first."""
        query, args = "SELECT record FROM runs ORDER BY created_at DESC", ()
        if suite is not None:
            query, args = "SELECT record FROM runs WHERE suite = ? ORDER BY created_at DESC", (suite,)
        return [RunRecord.model_validate_json(row[0]) for row in self._db.execute(query, args)]

    def group(self, run: RunRecord) -> list[RunRecord]:
        """`run` and the other repeats of its group, oldest first."""
        if run.repeat_group is None:
            return [run]
        return sorted((r for r in self.runs(run.suite) if r.repeat_group == run.repeat_group), key=lambda r: r.created_at)

    def find(self, suite: str, *, prompt_versions: dict[str, str], settings_hash: str, dataset_hash: str) -> RunRecord | None:
        """The newest stored run of exactly these prompt versions, settings and data."""
        return next(
            (r for r in self.runs(suite) if r.prompt_versions == prompt_versions and r.settings_hash == settings_hash
             and r.dataset_hash == dataset_hash),
            None,
        )  # fmt: skip

    @serialised
    def close(self) -> None:
        self._db.close()


def summary_json(run: RunRecord) -> dict[str, Any]:
    """`eval run --json`."""
    return {
        "run_id": run.run_id, "suite": run.suite, "items": run.items, "prompt_versions": run.prompt_versions,
        "metrics": {name: m.model_dump() for name, m in run.metrics.items()}, "cost_usd": run.cost_usd,
    }  # fmt: skip
