"""tickd: cron schedules, sensors and jobs for Python, run exactly once.

Definition modules import from here; nothing else in the package is public API
except `daemon.client` and `daemon.testing`.
"""

from daemon.context import RunStatusContext, ScheduleContext, SensorContext
from daemon.definitions import (
    Job,
    RunStatusSensor,
    Schedule,
    Sensor,
    job,
    partitioned_schedule,
    run_status_sensor,
    schedule,
    sensor,
)
from daemon.domain.partitions import (
    DailyPartitions,
    HourlyPartitions,
    MonthlyPartitions,
    StaticPartitions,
    TimeWindow,
    WeeklyPartitions,
)
from daemon.domain.requests import RunRequest, SensorResult, SkipReason
from daemon.domain.runs import RunStatus

__all__ = (
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
