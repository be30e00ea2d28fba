"""A daily report per calendar day in Berlin, and a job that publishes each one.

`daily_report` is partitioned by day: its partition key is the date ("2026-03-14") and
`context.partition_window` the day's start and end as aware datetimes (23 or 25 hours
long on the days the clocks change). Its schedule ticks at Berlin midnight and asks for
the day that just ended. After downtime it catches up on every missed day, at most the
3 newest (catchup="all", max_catchup=3); backfill older days with
`tickd backfill daily_report --from 2026-01-01 --to 2026-01-31`.

When a report succeeds, the run-status sensor `publish_after_report` asks for a run of
`publish` for the same day, exactly once per report run.
"""

from pathlib import Path

from daemon import DailyPartitions, RunRequest, job, partitioned_schedule, run_status_sensor

REPORTS = Path("var/reports")  # relative to the daemon's working directory
PUBLISHED = REPORTS / "published"

days = DailyPartitions(start="2026-01-01", timezone="Europe/Berlin")


@job(partitions=days, timeout=300, max_retries=2)
def daily_report(context):
    """Write var/reports/<day>.txt for the day named by the partition key."""
    window = context.partition_window
    REPORTS.mkdir(parents=True, exist_ok=True)
    target = REPORTS / f"{context.partition_key}.txt"
    text = (
        f"report for {context.partition_key}\n"
        f"window: {window.start.isoformat()} .. {window.end.isoformat()}\n"
        f"written by run {context.run_id} (attempt {context.attempt})\n"
    )
    # Write then rename, so a reader never sees half a report, even after a retry.
    partial = target.with_suffix(".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    context.log.info("report.written", path=str(target), partition=context.partition_key)


# Ticks when each day closes (midnight in Berlin) and requests that day's partition.
daily_report_schedule = partitioned_schedule(daily_report, catchup="all", max_catchup=3)


@job(partitions=days)
def publish(context):
    """Copy a finished report to var/reports/published/."""
    source = REPORTS / f"{context.partition_key}.txt"
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    (PUBLISHED / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    context.log.info("report.published", partition=context.partition_key)


@run_status_sensor(watched_jobs=[daily_report], statuses=["SUCCESS"], job=publish)
def publish_after_report(context):
    """After each successful report, publish the same day."""
    report = context.run
    # run_key = the report's run id: one publish per report run, even if the sensor is
    # called again for the same run after a restart.
    return RunRequest(run_key=report.run_id, partition_key=report.partition_key)
