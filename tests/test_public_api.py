"""The public surface of `daemon`: exactly these names, each importable.

Changing this list is an API change: update the CHANGELOG with it.
"""

from __future__ import annotations

import daemon

PUBLIC = (
    "DailyPartitions",
    "HourlyPartitions",
    "Job",
    "MonthlyPartitions",
    "RunRequest",
    "RunStatus",
    "RunStatusContext",
    "RunStatusSensor",
    "Schedule",
    "ScheduleContext",
    "Sensor",
    "SensorContext",
    "SensorResult",
    "SkipReason",
    "StaticPartitions",
    "TimeWindow",
    "WeeklyPartitions",
    "job",
    "partitioned_schedule",
    "run_status_sensor",
    "schedule",
    "sensor",
)


def test_all_is_exactly_the_public_names() -> None:
    assert isinstance(daemon.__all__, tuple)
    assert daemon.__all__ == PUBLIC


def test_every_public_name_is_importable() -> None:
    for name in daemon.__all__:
        assert getattr(daemon, name) is not None, name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from daemon import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(PUBLIC)
