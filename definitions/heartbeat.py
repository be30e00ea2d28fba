"""A heartbeat every minute: the smallest useful schedule.

Each minute the `every_minute` schedule asks for one run of `heartbeat`, which writes one
log line. If the daemon was down, only the newest missed minute runs after it comes
back (catchup="latest", the default) and the others are recorded as skipped ticks.
Watch it with `tickd ticks every_minute` or `journalctl -u tickd -o json`.
"""

from daemon import Schedule, job


@job
def heartbeat(context):
    """Prove the daemon schedules and runs jobs: one log line a minute."""
    context.log.info("heartbeat.alive")


# A schedule without a function: each tick requests one run of the job.
every_minute = Schedule(name="every_minute", cron="* * * * *", job=heartbeat)
