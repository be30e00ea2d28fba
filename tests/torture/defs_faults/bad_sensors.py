"""Sensors that raise, hang past their timeout, and answer garbage."""

from __future__ import annotations

import time

from daemon import RunRequest, job, sensor


@job(executor="thread")
def never_requested(context):  # type: ignore[no-untyped-def]
    context.log.info("never.runs")


@sensor(job=never_requested, minimum_interval=1)
def raising_sensor(context):  # type: ignore[no-untyped-def]
    raise ValueError("torture: the sensor's source is unreachable")


@sensor(job=never_requested, minimum_interval=1, timeout=1)
def hanging_sensor(context):  # type: ignore[no-untyped-def]
    time.sleep(30)
    return RunRequest()


@sensor(job=never_requested, minimum_interval=1)
def garbage_sensor(context):  # type: ignore[no-untyped-def]
    return 42
