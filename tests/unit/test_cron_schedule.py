"""Cron next-fire times on fixed DST dates, schedule validation, catch-up coalescing, and
the scheduler's `due()` on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from recording_runner import RecordingRunner

from ragline.config import ConfigError, load_config
from ragline.ingest.config import SourceConfig
from ragline.runs.history import RunHistory
from ragline.schedule.cron import CronSchedule, IntervalSchedule, missed_tick
from ragline.schedule.scheduler import Scheduler

HOUR = 3600.0
DAY = 24 * HOUR


def _at(zone: str, *wall: int) -> float:
    return datetime(*wall, tzinfo=ZoneInfo(zone)).timestamp()


def _utc(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%m-%d %H:%M")


def _fires(expression: str, zone: str, start: float, end: float) -> list[str]:
    """Every fire in (start, end], as UTC times."""
    schedule, fires, t = CronSchedule(expression, zone), [], start
    while (t := schedule.next_after(t)) <= end:
        fires.append(_utc(t))
    return fires


# --- DST: fixed hours fire once a day, hourly expressions keep real time ---


def test_a_time_in_the_spring_gap_fires_once_at_the_end_of_the_gap():
    # Europe/Berlin, Sunday 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    fires = _fires("30 2 * * *", "Europe/Berlin", _at("Europe/Berlin", 2025, 3, 29, 12), _at("Europe/Berlin", 2025, 3, 31, 12))
    assert fires == ["03-30 01:00", "03-31 00:30"]  # 03:00 CEST on the day, 02:30 CEST the next
    # America/New_York, Sunday 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    fires = _fires("30 2 * * *", "America/New_York", _at("America/New_York", 2025, 3, 8, 12),
                   _at("America/New_York", 2025, 3, 10, 12))  # fmt: skip
    assert fires == ["03-09 07:00", "03-10 06:30"]


def test_a_time_in_the_repeated_hour_fires_once_not_twice():
    # Europe/Berlin, 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    fires = _fires("30 2 * * *", "Europe/Berlin", _at("Europe/Berlin", 2025, 10, 25, 12), _at("Europe/Berlin", 2025, 10, 27, 12))
    assert fires == ["10-26 00:30", "10-27 01:30"]  # the first 02:30 (CEST), then 02:30 CET
    # America/New_York, 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    fires = _fires("30 1 * * *", "America/New_York", _at("America/New_York", 2025, 11, 1, 12),
                   _at("America/New_York", 2025, 11, 3, 12))  # fmt: skip
    assert fires == ["11-02 05:30", "11-03 06:30"]


def test_hourly_expressions_keep_their_pace_in_real_time_across_both_changes():
    spring = _fires("30 * * * *", "Europe/Berlin", _at("Europe/Berlin", 2025, 3, 30, 0), _at("Europe/Berlin", 2025, 3, 30, 5))
    assert spring == ["03-29 23:30", "03-30 00:30", "03-30 01:30", "03-30 02:30"]  # 02:30 CET does not exist
    autumn = _fires("30 * * * *", "Europe/Berlin", _at("Europe/Berlin", 2025, 10, 26, 0), _at("Europe/Berlin", 2025, 10, 26, 4))
    assert autumn == ["10-25 22:30", "10-25 23:30", "10-26 00:30", "10-26 01:30", "10-26 02:30"]  # 02:30 twice
    start = _at("America/New_York", 2025, 11, 2, 1, 50)  # EDT; at 02:00 EDT the clock shows 01:00 EST
    minutes = CronSchedule("* * * * *", "America/New_York")
    t, gaps = start, []
    for _ in range(30):  # into the repeated hour: one fire a minute, never a pause or a repeat
        t, previous = minutes.next_after(t), t
        gaps.append(t - previous)
    assert set(gaps) == {60.0} and _utc(t) == "11-02 06:20"  # 01:20 EST


def test_every_minute_is_a_valid_schedule_and_intervals_keep_the_beat():
    entry = SourceConfig(kind="filesystem", root=".", schedule="* * * * *")
    assert entry.schedule == "* * * * *" and entry.timezone == "UTC"
    assert CronSchedule("* * * * *", "UTC").next_after(120.5) == 180.0
    every = IntervalSchedule(2.0)
    assert (every.next_after(100.0), every.next_after(101.9), every.describe()) == (102.0, 102.0, "every 2 s")


# --- validation names the field ---


@pytest.mark.parametrize(
    "entry, message",
    [
        ('schedule = "61 * * * *"', "sources.0.schedule: Value error, '61 * * * *' is not a valid cron schedule"),
        ('schedule = "0 0 * * * *"', "sources.0.schedule: Value error, '0 0 * * * *' has 6 fields; a cron schedule has 5"),
        ('schedule = "0 0 30 2 *"', "sources.0.schedule: Value error, '0 0 30 2 *' never fires"),
        ('schedule = "0 2 * * *"\ntimezone = "Europe/Berln"',
         "sources.0.timezone: Value error, unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"),
        ('schedule = "0 2 * * *"\ninterval_seconds = 5', "give schedule or interval_seconds, not both"),
        ("catch_up_seconds = 60", "catch_up_seconds needs a schedule or interval_seconds"),
    ],
)  # fmt: skip
def test_bad_schedules_fail_at_load_naming_the_field(tmp_path, entry, message):
    config = tmp_path / "ragline.toml"
    config.write_text(f'[[sources]]\nkind = "filesystem"\nroot = "notes"\n{entry}\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(config)
    assert message in str(excinfo.value) and str(config) in str(excinfo.value)


def test_schedule_fields_are_not_connector_settings_and_typos_still_fail(tmp_path):
    config = tmp_path / "ragline.toml"
    config.write_text('[[sources]]\nkind = "filesystem"\nroot = "notes"\nname = "notes"\nschedule = "0 2 * * *"\n'
                      'timezone = "Europe/Berlin"\nwatch = true\ncatch_up_seconds = 600\n\n'
                      '[[sources]]\nkind = "web"\nurls = ["https://example.com/"]\nname = "site"\ninterval_seconds = 30\n')  # fmt: skip
    first, second = load_config(config).sources
    assert first.connector_settings() == {"root": "notes"}
    assert second.connector_settings() == {"urls": ["https://example.com/"], "name": "site"}  # web names its source
    config.write_text('[[sources]]\nkind = "filesystem"\nroot = "notes"\nschedul = "0 2 * * *"\n')
    with pytest.raises(ConfigError, match="unknown key `schedul` for a filesystem source"):
        load_config(config)
    config.write_text('[[sources]]\nkind = "web"\nurls = ["https://example.com/"]\nwatch = true\n')
    with pytest.raises(ConfigError, match="watch = true is for filesystem sources, not web"):
        load_config(config)


# --- catch-up: missed ticks coalesce into one run, within the window ---


def test_missed_ticks_coalesce_and_respect_the_window():
    daily = CronSchedule("0 2 * * *", "UTC")
    now = _at("UTC", 2025, 6, 10, 10)  # 8 h after today's 02:00
    three_days_ago = now - 3 * DAY
    assert missed_tick(daily, three_days_ago, now, None)  # default window: one day
    assert missed_tick(daily, three_days_ago, now, 9 * HOUR)
    assert not missed_tick(daily, three_days_ago, now, 1 * HOUR)  # the last missed tick is older than the window
    assert not missed_tick(daily, three_days_ago, now, 0)
    assert not missed_tick(daily, _at("UTC", 2025, 6, 10, 2, 0, 1), now, None)  # ran after today's tick
    assert not missed_tick(daily, None, now, None)  # never ran: its first tick runs it


def test_due_on_a_fake_clock_gives_one_catch_up_then_the_regular_beat(tmp_path):
    history = RunHistory(tmp_path)
    ran = history.start("polled", "cron")
    history.finish(ran.id, "succeeded")
    history.skipped("polled", "cron")  # a skipped tick is not a run: the catch-up still counts from `ran`
    t0 = (ran.started.timestamp() // 10 + 100) * 10 + 3  # 100 ticks of 10 s missed
    sources = [
        SourceConfig(kind="filesystem", root=".", name="polled", interval_seconds=10),
        SourceConfig(kind="filesystem", root=".", name="fresh", interval_seconds=10),  # no history: no catch-up
        SourceConfig(
            kind="filesystem", root=".", name="daily", schedule="0 2 * * *", timezone="Europe/Berlin", catch_up_seconds=0
        ),
        SourceConfig(kind="filesystem", root=".", name="manual-only"),
    ]
    runner = RecordingRunner()
    scheduler = Scheduler(runner, sources, history, clock=lambda: t0)
    assert scheduler.due(t0) == [("polled", "catch-up")]
    assert scheduler.due(t0) == [("polled", "catch-up")]  # due() changes nothing
    assert scheduler.tick(t0) == [("polled", "catch-up")] and runner.started == [("polled", "catch-up")]
    assert scheduler.due(t0 + 6) == []  # one catch-up for 100 missed ticks
    assert scheduler.due(t0 + 7) == [("polled", "cron"), ("fresh", "cron")]
    scheduler.tick(t0 + 7)
    assert scheduler.due(t0 + 16.9) == [] and scheduler.due(t0 + 17) == [("polled", "cron"), ("fresh", "cron")]
    scheduler.tick(t0 + 60)  # a stalled process: the ticks it slept through make one run each
    assert runner.started[-2:] == [("polled", "cron"), ("fresh", "cron")] and scheduler.due(t0 + 66.9) == []

    rows = scheduler.schedules()
    assert [row["source"] for row in rows] == ["polled", "fresh", "daily"]
    assert all(set(row) == {"source", "schedule", "timezone", "next_run", "last_run_status"} for row in rows)
    assert rows[0] | {"next_run": None} == {"source": "polled", "schedule": "every 10 s", "timezone": "UTC",
                                            "next_run": None, "last_run_status": "succeeded"}  # fmt: skip
    assert datetime.fromisoformat(rows[0]["next_run"]).timestamp() == pytest.approx(t0 + 67, abs=1)
    daily = datetime.fromisoformat(rows[2]["next_run"])
    assert (daily.hour, daily.minute, str(daily.utcoffset()) in {"1:00:00", "2:00:00"}) == (2, 0, True)
    assert rows[2]["last_run_status"] is None
    history.close()
