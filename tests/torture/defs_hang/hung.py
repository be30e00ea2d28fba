"""A sync sensor that never returns (its timeout abandons it in its thread)."""

from __future__ import annotations

import threading

from daemon import RunRequest, job, sensor


@job(executor="thread")
def unused(context):  # type: ignore[no-untyped-def]
    context.log.info("never.runs")


@sensor(job=unused, minimum_interval=1, timeout=1)
def hung_sensor(context):  # type: ignore[no-untyped-def]
    threading.Event().wait()  # a socket read without a timeout, say
    return RunRequest()
