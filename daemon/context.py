"""What evaluation functions receive: the context of a schedule tick or a sensor tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from daemon.domain.runs import Run


def _logger() -> Any:
    return structlog.get_logger("tickd.user")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleContext:
    """Given to a schedule function: the tick it decides (`scheduled_for`, aware, in the
    schedule's timezone) and a logger bound to the schedule."""

    schedule_name: str
    scheduled_for: datetime
    log: Any = field(default_factory=_logger)


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorContext:
    """Given to a sensor function: its stored `cursor` (None at first), the run key of
    its last requested run, when it last ticked, and a logger bound to the sensor."""

    sensor_name: str
    cursor: str | None
    last_run_key: str | None = None
    last_tick_at: datetime | None = None
    evaluated_at: datetime | None = None
    log: Any = field(default_factory=_logger)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStatusContext:
    """Given to a run-status sensor: the run that just finished."""

    sensor_name: str
    run: Run
    log: Any = field(default_factory=_logger)

    @property
    def status(self) -> str:
        return self.run.status.value


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """Given to a job: which run this is, its configuration and partition, the attempt
    number (1 for the first try), and `log`, a structlog logger bound with run_id whose
    events are also kept with the run (`tickd logs RUN_ID`)."""

    run_id: str
    job_name: str
    run_config: Mapping[str, Any]
    tags: Mapping[str, str]
    partition_key: str | None
    partition_window: Any  # daemon.TimeWindow for time partitions, else None
    attempt: int
    log: Any
