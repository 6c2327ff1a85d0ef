"""The ingestion workflow. Workflow code is replayed from history, so it only schedules
activities (by name: their code lives in the worker, `ragline.temporal.activities`) and
takes every timeout from its input, never from the config of whichever worker replays it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

INGEST_WORKFLOW = "ragline-ingest"
INGEST_ACTIVITY = "ragline-ingest-source"
OPTIMIZE_ACTIVITY = "ragline-optimize-store"
# Errors a retry cannot fix: the source is not configured, or the trigger is not one ragline knows.
NOT_RETRYABLE = ["UnknownSource", "BadRequest"]


@dataclass
class IngestRequest:
    source: str
    trigger: str = "cron"
    heartbeat_timeout_s: float = 30
    attempts: int = 3
    retry_initial_s: float = 10
    run_timeout_s: float = 6 * 3600
    optimize_timeout_s: float = 3600


@workflow.defn(name=INGEST_WORKFLOW)
class IngestWorkflow:
    @workflow.run
    async def run(self, request: IngestRequest) -> dict:
        """The run's record (`ragline runs --json` shape) under "run", and its chunk count."""
        outcome = await workflow.execute_activity(
            INGEST_ACTIVITY,
            request,
            result_type=dict,
            start_to_close_timeout=timedelta(seconds=request.run_timeout_s),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=request.retry_initial_s),
                backoff_coefficient=2.0,
                maximum_attempts=request.attempts,
                non_retryable_error_types=NOT_RETRYABLE,
            ),
        )
        if outcome.get("chunks_embedded"):
            await workflow.execute_activity(
                OPTIMIZE_ACTIVITY,
                start_to_close_timeout=timedelta(seconds=request.optimize_timeout_s),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=request.retry_initial_s), maximum_attempts=3),
            )
        return outcome
