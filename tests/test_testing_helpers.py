"""The helpers users test their definitions with."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from daemon import DailyPartitions, RunRequest, SensorResult, SkipReason, job, schedule, sensor
from daemon.testing import evaluate_schedule, evaluate_sensor, run_job

days = DailyPartitions(start="2026-01-01", timezone="Europe/Berlin")


@job(partitions=days, tags={"db": "warehouse"})
def report(context):
    context.log.info("report.written", day=context.partition_key)
    window = context.partition_window
    return window.end.astimezone(UTC) - window.start.astimezone(UTC)


@schedule(cron="0 6 * * *", job=report, timezone="Europe/Berlin")
def morning(context):
    if context.scheduled_for.weekday() >= 5:
        return SkipReason("weekend")
    return RunRequest.for_partition(context.scheduled_for.date().isoformat())


@sensor(job=report)
def newest(context):
    seen = int(context.cursor or 0)
    return SensorResult(run_requests=[RunRequest(run_key=str(seen + 1))], cursor=str(seen + 1))


def test_evaluate_schedule_at_a_time():
    berlin = ZoneInfo("Europe/Berlin")
    monday = evaluate_schedule(morning, datetime(2026, 3, 30, 6, tzinfo=berlin))
    assert monday.status == "SUCCESS"
    (run,) = monday.runs
    assert run.partition_key == "2026-03-30" and run.tags["db"] == "warehouse"
    assert run.run_key == "2026-03-30T04:00:00+00:00"
    sunday = evaluate_schedule(morning, datetime(2026, 3, 29, 6, tzinfo=berlin))
    assert (sunday.status, sunday.skip_reason) == ("SKIPPED", "weekend")
    with pytest.raises(ValueError, match="aware"):
        evaluate_schedule(morning, datetime(2026, 3, 30, 6))


def test_evaluate_sensor_with_a_cursor():
    result = evaluate_sensor(newest, cursor="41")
    assert result.cursor == "42"
    assert [r.run_key for r in result.runs] == ["42"]


def test_run_job_in_process_with_partition():
    result = run_job(report, partition_key="2026-03-29")
    assert result.success
    assert result.value.total_seconds() == 23 * 3600  # the day the clocks go forward
    assert any("report.written" in line for line in result.logs)
    failed = run_job(
        report, partition_key="2026-03-29", raise_on_error=False, run_config={}, tags={}
    )
    assert failed.success


def test_run_job_reports_errors():
    @job
    def broken(context):
        raise KeyError("missing")

    with pytest.raises(KeyError):
        run_job(broken)
    result = run_job(broken, raise_on_error=False)
    assert not result.success and isinstance(result.error, KeyError)
