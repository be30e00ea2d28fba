"""The full-disk test's load: one run per second, catching up everything it missed."""

from __future__ import annotations

from daemon import Schedule, job


@job(executor="thread")
def steady_job(context):  # type: ignore[no-untyped-def]
    context.log.info("steady.done")


steady = Schedule(
    name="steady", cron="* * * * * *", job=steady_job, catchup="all", max_catchup=10000
)
