"""One Temporal Schedule per scheduled `[[sources]]` entry, kept in step with the config.

Each schedule skips a tick while the source's previous run is still going (overlap policy
skip), catches up on ticks missed while Temporal was down within one interval of the
schedule (or the entry's `catch_up_seconds`), not Temporal's default of a year, and pauses
when a run's workflow fails (its attempts used up): a broken source stops burning runs until
an operator unpauses it (`temporal schedule toggle --unpause --schedule-id ID`). Syncing keeps
a paused schedule paused, and deletes the schedules of entries no longer configured.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from ragline.runs.sources import named_sources
from ragline.schedule.cron import period, schedule_of
from ragline.temporal.workflows import IngestRequest, IngestWorkflow

if TYPE_CHECKING:
    from ragline.ingest.config import SourceConfig
    from ragline.temporal.config import TemporalConfig

MIN_CATCH_UP = timedelta(seconds=10)  # Temporal's floor: a shorter window is raised to it


def schedule_prefix(queue: str) -> str:
    return f"ragline:{queue}:"


def workflow_id(queue: str, source: str) -> str:
    """Scheduled runs get the fire time appended by Temporal; manual ones a suffix of their own."""
    return f"ragline-ingest:{queue}:{source}"


def ingest_request(source: str, trigger: str, config: TemporalConfig) -> IngestRequest:
    return IngestRequest(
        source=source, trigger=trigger, heartbeat_timeout_s=config.heartbeat_timeout_s, attempts=config.attempts,
        retry_initial_s=config.retry_initial_s, run_timeout_s=config.run_timeout_s,
        optimize_timeout_s=config.optimize_timeout_s,
    )  # fmt: skip


def source_schedule(name: str, entry: SourceConfig, config: TemporalConfig, queue: str) -> Schedule | None:
    """The entry's Temporal Schedule, or None when it has no schedule (a watch only, or none)."""
    plan = schedule_of(entry)
    if plan is None:
        return None
    if entry.schedule is not None:
        spec = ScheduleSpec(cron_expressions=[entry.schedule], time_zone_name=entry.timezone)
    else:
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=entry.interval_seconds or 0))])
    window = entry.catch_up_seconds if entry.catch_up_seconds is not None else period(plan, time.time())
    return Schedule(
        action=ScheduleActionStartWorkflow(
            IngestWorkflow.run, ingest_request(name, "cron", config), id=workflow_id(queue, name), task_queue=queue
        ),
        spec=spec,
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=max(timedelta(seconds=window), MIN_CATCH_UP),
            pause_on_failure=True,
        ),
    )


async def sync_schedules(client: Client, sources: list[SourceConfig], config: TemporalConfig, queue: str) -> list[str]:
    """Create or update the schedule of every scheduled entry, delete this queue's other
    schedules; returns the ids of the schedules now registered."""
    prefix = schedule_prefix(queue)
    wanted = {
        prefix + name: schedule
        for name, entry in named_sources(sources).items()
        if (schedule := source_schedule(name, entry, config, queue)) is not None
    }
    existing = {listed.id async for listed in await client.list_schedules() if listed.id.startswith(prefix)}
    for schedule_id, schedule in wanted.items():
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(_keeping_state(schedule))
    for schedule_id in existing - set(wanted):
        await client.get_schedule_handle(schedule_id).delete()
    return sorted(wanted)


def _keeping_state(schedule: Schedule):
    """An updater that replaces the schedule but keeps its state: paused stays paused."""

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=replace(schedule, state=current.description.schedule.state))

    return update
