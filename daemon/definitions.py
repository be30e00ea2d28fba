"""What users write: jobs, schedules and sensors, as decorators or plain constructors.

Every definition is validated when it is built (that is, when its module is imported),
so a bad cron, timezone or option fails at load with the object's name, not at the
first tick.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar, overload

from daemon.domain.cron import parse_cron, zone
from daemon.domain.firing import Catchup, Overlap
from daemon.domain.partitions import PartitionsDefinition, StaticPartitions
from daemon.domain.runs import RunStatus
from daemon.domain.ticks import InstigatorStatus
from daemon.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])


class ExecutorKind(StrEnum):
    PROCESS = "process"
    THREAD = "thread"
    ASYNC = "async"


DefaultStatus = Literal["running", "stopped"]
Seconds = float | int | timedelta


def _seconds(
    obj: str, option: str, value: Seconds | None, *, allow_zero: bool = False
) -> float | None:
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs < 0 or (secs == 0 and not allow_zero):
        raise DefinitionError(obj, f"{option}={value!r} must be a positive number of seconds")
    return secs


def _enum(obj: str, option: str, enum: type[StrEnum], value: object) -> Any:
    try:
        return enum(str(value))
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise DefinitionError(obj, f"{option}={value!r} is not one of {allowed}") from None


def _status(obj: str, value: str) -> InstigatorStatus:
    if value not in ("running", "stopped"):
        raise DefinitionError(obj, f"default_status={value!r} must be 'running' or 'stopped'")
    return InstigatorStatus.RUNNING if value == "running" else InstigatorStatus.STOPPED


def _tags(obj: str, tags: Mapping[str, object] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise DefinitionError(
            obj, f"tags must be a mapping of str to str, not {type(tags).__name__}"
        )
    return {str(k): str(v) for k, v in tags.items()}


def _check_callable(obj: str, fn: object) -> None:
    if not callable(fn):
        raise DefinitionError(obj, f"expected a function, got {type(fn).__name__}")


def is_async_callable(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (callable objects with async __call__)
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Job:
    """A unit of work. `fn(context)` runs once per run, sync or async."""

    name: str
    fn: Callable[..., Any]
    executor: ExecutorKind | None = None  # None: the configured default
    priority: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds
    max_retries: int = 0
    retry_delay: float = 10.0  # seconds, doubled per attempt, with jitter
    partitions: PartitionsDefinition | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        obj = f"job {self.name!r}"
        _check_callable(obj, self.fn)
        if self.max_retries < 0:
            raise DefinitionError(obj, f"max_retries={self.max_retries} must be 0 or more")
        if self.priority is not None and not isinstance(self.priority, int):
            raise DefinitionError(obj, f"priority={self.priority!r} must be an integer")

    @property
    def is_async(self) -> bool:
        return is_async_callable(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


@dataclass(frozen=True, slots=True, init=False, eq=False)
class Schedule:
    """Cron-driven requests for runs of `job`.

    `Schedule(name=…, cron=…, job=…)` builds a schedule without a function: each tick
    requests one run of the job (for a partitioned job, the partition the tick closes;
    `cron` may then be left out to follow the partitions' cadence). `@schedule(...)`
    attaches `fn(context)`, which returns a RunRequest, a list of them, a SkipReason,
    or None (no run).
    """

    name: str
    cron: tuple[str, ...]
    job: Job | str
    fn: Callable[..., Any] | None
    timezone: str
    default_status: InstigatorStatus
    catchup: Catchup
    max_catchup: int
    catchup_window: float | None  # seconds; missed ticks older than this never run
    overlap: Overlap
    jitter: float | None  # seconds; deterministic per (schedule, tick)
    tags: Mapping[str, str]
    priority: int | None
    run_config: Mapping[str, Any]
    description: str | None

    def __init__(
        self,
        *,
        name: str,
        job: Job | str,
        cron: str | Iterable[str] | None = None,
        fn: Callable[..., Any] | None = None,
        timezone: str | None = None,
        default_status: DefaultStatus = "running",
        catchup: str = "latest",
        max_catchup: int = 100,
        catchup_window: Seconds | None = None,
        overlap: str = "allow",
        jitter: Seconds | None = None,
        tags: Mapping[str, object] | None = None,
        priority: int | None = None,
        run_config: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        obj = f"schedule {name!r}"
        if not isinstance(job, str | Job):
            raise DefinitionError(
                obj, f"job must be a @job or a job name, not {type(job).__name__}"
            )
        parts = job.partitions if isinstance(job, Job) else None
        if cron is None:
            cron = getattr(parts, "cron", None)
            if cron is None:
                raise DefinitionError(
                    obj, "needs cron=", "pass a cron string, or a job with time-window partitions"
                )
            if timezone is None:
                timezone = str(getattr(parts, "timezone", "UTC"))
        timezone = timezone or "UTC"
        crons = (cron,) if isinstance(cron, str) else tuple(cron)
        if not crons:
            raise DefinitionError(obj, "needs at least one cron string")
        zone(timezone)  # UnknownTimezoneError names the zone
        for expression in crons:
            parse_cron(expression, timezone)  # InvalidCronError names the expression and field
        if fn is not None:
            _check_callable(obj, fn)
        if max_catchup < 1:
            raise DefinitionError(obj, f"max_catchup={max_catchup} must be at least 1")
        values: dict[str, Any] = {
            "name": name,
            "cron": crons,
            "job": job,
            "fn": fn,
            "timezone": timezone,
            "default_status": _status(obj, default_status),
            "catchup": _enum(obj, "catchup", Catchup, catchup),
            "max_catchup": max_catchup,
            "catchup_window": _seconds(obj, "catchup_window", catchup_window),
            "overlap": _enum(obj, "overlap", Overlap, overlap),
            "jitter": _seconds(obj, "jitter", jitter, allow_zero=True),
            "tags": _tags(obj, tags),
            "priority": priority,
            "run_config": dict(run_config or {}),
            "description": description or (inspect.getdoc(fn) if fn else None),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def job_name(self) -> str:
        return self.job if isinstance(self.job, str) else self.job.name

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, cron={self.cron!r}, job={self.job_name!r})"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Sensor:
    """A function polled every `minimum_interval` seconds; it returns run requests."""

    name: str
    fn: Callable[..., Any]
    jobs: tuple[Job | str, ...] = ()
    minimum_interval: float = 30.0
    timeout: float = 60.0
    default_status: InstigatorStatus = InstigatorStatus.RUNNING
    description: str | None = None

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(j if isinstance(j, str) else j.name for j in self.jobs)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RunStatusSensor:
    """A function called when a run of a watched job reaches one of `statuses`."""

    name: str
    fn: Callable[..., Any]
    watched_jobs: tuple[Job | str, ...] = ()  # empty: every job
    statuses: tuple[RunStatus, ...] = (RunStatus.SUCCESS,)
    jobs: tuple[Job | str, ...] = ()  # what its RunRequests may start
    timeout: float = 60.0
    default_status: InstigatorStatus = InstigatorStatus.RUNNING
    description: str | None = None

    @property
    def watched_job_names(self) -> tuple[str, ...]:
        return tuple(j if isinstance(j, str) else j.name for j in self.watched_jobs)

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(j if isinstance(j, str) else j.name for j in self.jobs)


Definition = Job | Schedule | Sensor | RunStatusSensor


# ---- constructors with validation ------------------------------------------------------


def make_job(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    executor: str | None = None,
    priority: int | None = None,
    tags: Mapping[str, object] | None = None,
    timeout: Seconds | None = None,
    max_retries: int = 0,
    retry_delay: Seconds = 10.0,
    partitions: PartitionsDefinition | Iterable[str] | None = None,
    description: str | None = None,
) -> Job:
    job_name = name or getattr(fn, "__name__", None) or repr(fn)
    obj = f"job {job_name!r}"
    if partitions is not None and not isinstance(partitions, PartitionsDefinition):
        partitions = StaticPartitions(tuple(partitions))
    return Job(
        name=job_name,
        fn=fn,
        executor=None if executor is None else _enum(obj, "executor", ExecutorKind, executor),
        priority=priority,
        tags=_tags(obj, tags),
        timeout=_seconds(obj, "timeout", timeout),
        max_retries=max_retries,
        retry_delay=_seconds(obj, "retry_delay", retry_delay, allow_zero=True) or 0.0,
        partitions=partitions,
        description=description or inspect.getdoc(fn),
    )


# ---- the decorators ----------------------------------------------------------------------


@overload
def job(fn: F, /) -> Job: ...
@overload
def job(
    *,
    name: str | None = None,
    executor: str | None = None,
    priority: int | None = None,
    tags: Mapping[str, object] | None = None,
    timeout: Seconds | None = None,
    max_retries: int = 0,
    retry_delay: Seconds = 10.0,
    partitions: PartitionsDefinition | Iterable[str] | None = None,
    description: str | None = None,
) -> Callable[[F], Job]: ...
def job(fn: Callable[..., Any] | None = None, /, **options: Any) -> Job | Callable[[F], Job]:
    """Declare a job: `@job` or `@job(priority=5, executor="thread", timeout=600)`."""
    if fn is not None:
        return make_job(fn)
    return lambda f: make_job(f, **options)


def schedule(
    *,
    cron: str | Iterable[str],
    job: Job | str,
    name: str | None = None,
    **options: Any,
) -> Callable[[F], Schedule]:
    """Declare a schedule whose function decides each tick's requests.

    Options: timezone, default_status, catchup, max_catchup, catchup_window, overlap,
    jitter, tags, priority, description.
    """

    def wrap(fn: F) -> Schedule:
        return Schedule(name=name or fn.__name__, cron=cron, job=job, fn=fn, **options)

    return wrap


def partitioned_schedule(job: Job, *, name: str | None = None, **options: Any) -> Schedule:
    """A schedule that runs a time-partitioned job once per partition as it closes."""
    return Schedule(name=name or f"{job.name}_schedule", job=job, **options)


def sensor(
    *,
    job: Job | str | None = None,
    jobs: Iterable[Job | str] = (),
    name: str | None = None,
    minimum_interval: Seconds = 30.0,
    timeout: Seconds = 60.0,
    default_status: DefaultStatus = "running",
    description: str | None = None,
) -> Callable[[F], Sensor]:
    """Declare a sensor: `fn(context)` returns RunRequests, a SkipReason or a SensorResult."""

    def wrap(fn: F) -> Sensor:
        sensor_name = name or fn.__name__
        obj = f"sensor {sensor_name!r}"
        _check_callable(obj, fn)
        all_jobs = ((job,) if job is not None else ()) + tuple(jobs)
        return Sensor(
            name=sensor_name,
            fn=fn,
            jobs=all_jobs,
            minimum_interval=_seconds(obj, "minimum_interval", minimum_interval) or 30.0,
            timeout=_seconds(obj, "timeout", timeout) or 60.0,
            default_status=_status(obj, default_status),
            description=description or inspect.getdoc(fn),
        )

    return wrap


def run_status_sensor(
    *,
    watched_jobs: Iterable[Job | str] = (),
    statuses: Iterable[str | RunStatus] = ("SUCCESS",),
    job: Job | str | None = None,
    jobs: Iterable[Job | str] = (),
    name: str | None = None,
    timeout: Seconds = 60.0,
    default_status: DefaultStatus = "running",
    description: str | None = None,
) -> Callable[[F], RunStatusSensor]:
    """Declare a sensor called when a watched job's run finishes with one of `statuses`.

    `fn(context)` gets `context.run` (the finished run) and returns RunRequests or a
    SkipReason, like any sensor.
    """

    def wrap(fn: F) -> RunStatusSensor:
        sensor_name = name or fn.__name__
        obj = f"run_status_sensor {sensor_name!r}"
        _check_callable(obj, fn)
        wanted = tuple(_enum(obj, "statuses", RunStatus, s) for s in statuses)
        not_final = [s.value for s in wanted if not s.is_terminal]
        if not_final:
            raise DefinitionError(obj, f"statuses {not_final} are not final run statuses")
        return RunStatusSensor(
            name=sensor_name,
            fn=fn,
            watched_jobs=tuple(watched_jobs),
            statuses=wanted,
            jobs=((job,) if job is not None else ()) + tuple(jobs),
            timeout=_seconds(obj, "timeout", timeout) or 60.0,
            default_status=_status(obj, default_status),
            description=description or inspect.getdoc(fn),
        )

    return wrap
