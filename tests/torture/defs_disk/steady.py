"""The full-disk test's load: one run per second, catching up everything it missed, each
logging a few KiB, so that the store needs new pages every few seconds and a full disk
shows soon within the test's wait."""

from __future__ import annotations

from daemon import Schedule, job


@job(executor="thread")
def steady_job(context):  # type: ignore[no-untyped-def]
    context.log.info("steady.done", padding="." * 6000)


steady = Schedule(
    name="steady", cron="* * * * * *", job=steady_job, catchup="all", max_catchup=10000
)
