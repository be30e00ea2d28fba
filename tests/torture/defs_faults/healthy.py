"""A healthy one-second schedule beside the broken definitions: it must not notice them."""

from __future__ import annotations

from daemon import Schedule, job


@job
def healthy_job(context):  # type: ignore[no-untyped-def]
    context.log.info("healthy.done")


healthy = Schedule(name="healthy", cron="* * * * * *", job=healthy_job)
