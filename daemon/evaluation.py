"""Calling the functions users write, and turning their answers into runs.

Shared by the scheduler loop, `tickd sensors preview`, `tickd simulate` and the testing
helpers, so every path reads a schedule's or sensor's answer the same way.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio

from daemon.definitions import Job, is_async_callable
from daemon.domain.ids import IdGenerator
from daemon.domain.limits import SERIAL_TAG
from daemon.domain.requests import RunRequest, SensorResult, SkipReason, default_run_key
from daemon.domain.runs import PRIORITY_TAG, Instigator, Run, RunStatus, priority_of
from daemon.domain.ticks import KeyedRequests
from daemon.errors import TickdError
from daemon.slotted import keyword_constructor
from daemon.threads import run_in_daemon_thread


class EvaluationError(TickdError):
    """A schedule or sensor function raised, timed out or answered nonsense."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        self.message = message
        self.detail = detail  # a traceback, without locals
        super().__init__(message)

    @property
    def text(self) -> str:
        return self.message if not self.detail else f"{self.message}\n{self.detail}"

    @classmethod
    def from_exception(cls, what: str, exc: BaseException) -> EvaluationError:
        summary = "".join(traceback.format_exception_only(exc)).strip()
        detail = "".join(traceback.format_exception(exc)).rstrip()
        return cls(f"{what} raised {summary}", detail)


class SyncCall:
    """A sync user function running in a worker thread; `done` is set when it returns,
    even after the caller gave up on it (a timed-out sync function cannot be killed)."""

    def __init__(self) -> None:
        self.done = threading.Event()


async def call_user_fn(
    what: str,
    fn: Callable[..., Any],
    context: object,
    *,
    time_limit: float | None,
    limiter: anyio.CapacityLimiter | None = None,
    on_abandon: Callable[[SyncCall], None] | None = None,
) -> Any:
    """Call `fn(context)`: on the loop if async, in a worker thread if sync.

    Raises EvaluationError on an exception or when `time_limit` passes: an async function
    is cancelled; a sync one is abandoned in its thread and `on_abandon` gets its
    SyncCall so the caller can wait for the thread before calling again.
    """
    call = SyncCall()

    def run_sync() -> Any:
        try:
            return fn(context)
        finally:
            call.done.set()

    try:
        with anyio.fail_after(time_limit):
            if is_async_callable(fn):
                return await fn(context)
            return await run_in_daemon_thread(run_sync, limiter=limiter)
    except TimeoutError:
        if not call.done.is_set() and not is_async_callable(fn) and on_abandon is not None:
            on_abandon(call)
        raise EvaluationError(f"{what} timed out after {time_limit:g}s") from None
    except EvaluationError:
        raise
    except Exception as exc:
        raise EvaluationError.from_exception(what, exc) from None


_EXPECTED = "a RunRequest, a list of RunRequests, a SkipReason, a SensorResult or None"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A function's answer, read: requests to make, or why not; and a new cursor."""

    requests: tuple[RunRequest, ...] = ()
    skip_reason: str | None = None
    cursor: str | None = None
    set_cursor: bool = False


def read_answer(what: str, value: object) -> Answer:
    """Normalise what a schedule or sensor function returned; EvaluationError on garbage."""
    if value is None:
        return Answer(skip_reason=f"{what} returned no run requests")
    if isinstance(value, SkipReason):
        return Answer(skip_reason=value.message or f"{what} skipped")
    if isinstance(value, RunRequest):
        return Answer(requests=(value,))
    if isinstance(value, SensorResult):
        skip = value.skip_reason
        skip_text = skip.message if isinstance(skip, SkipReason) else skip
        requests = _requests(what, value.run_requests)
        if value.cursor is not None and not isinstance(value.cursor, str):
            raise EvaluationError(
                f"{what} returned a cursor of type {type(value.cursor).__name__}; "
                "a cursor must be a str (serialise it, e.g. with json.dumps)"
            )
        if not requests and skip_text is None:
            skip_text = f"{what} returned no run requests"
        return Answer(
            requests=requests,
            skip_reason=skip_text if not requests else None,
            cursor=value.cursor,
            set_cursor=value.cursor is not None,
        )
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise EvaluationError(f"{what} returned {type(value).__name__}; expected {_EXPECTED}")
    requests = _requests(what, value)
    if not requests:
        return Answer(skip_reason=f"{what} returned no run requests")
    return Answer(requests=requests)


def _requests(what: str, values: Iterable[object]) -> tuple[RunRequest, ...]:
    out: list[RunRequest] = []
    for item in values:
        if not isinstance(item, RunRequest):
            raise EvaluationError(
                f"{what} returned a list containing {type(item).__name__}; expected RunRequests"
            )
        out.append(item)
    return tuple(out)


_Base = tuple[str, Job, dict[str, str], int]  # job name, job, tags, priority


new_run = keyword_constructor(Run)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDefaults:
    """What an instigator adds to each of its requests (schedule tags, priority, config)."""

    job: str | None = None
    tags: Mapping[str, str] | None = None
    priority: int | None = None
    run_config: Mapping[str, Any] | None = None
    serial: bool = False  # overlap policy is not `allow`: tag runs to run one at a time


def build_runs(
    what: str,
    requests: Sequence[RunRequest],
    *,
    jobs: Mapping[str, Job],
    instigator: Instigator,
    defaults: RunDefaults,
    now: datetime,
    ids: IdGenerator,
    tick_id: str | None = None,
    scheduled_for: datetime | None = None,
    bases: dict[str | None, _Base] | None = None,
    run_ids: Sequence[str] | None = None,
) -> list[Run]:
    """Turn requests into QUEUED runs: resolve the job, merge tags, priority and config,
    validate the partition, and give schedule ticks their default run_key.

    Requests without a run_key from a schedule tick get the tick time as run_key (with
    `#n` for the n-th such request), so a tick resumed after a crash never runs twice.

    `bases` may carry, from one call to the next with the same `jobs`, `instigator` and
    `defaults`, what the job and the instigator give each request for a job. `run_ids`:
    the requests' run ids, made before (else made here).
    """
    runs: list[Run] = []
    unkeyed = 0
    if bases is None:
        bases = {}
    default_config = defaults.run_config or {}
    if run_ids is None:
        run_ids = ids.many(now, len(requests))
    queued = RunStatus.QUEUED
    for request, run_id in zip(requests, run_ids, strict=True):
        job_name = request.job or defaults.job
        base = bases.get(job_name)
        if base is None:
            base = bases[job_name] = job_base(what, job_name, jobs, instigator, defaults)
        job_name, job, base_tags, base_priority = base
        if request.partition_key is not None:
            if job.partitions is None:
                raise EvaluationError(
                    f"{what} requested partition {request.partition_key!r} of job {job_name!r}, "
                    "which has no partitions"
                )
            try:
                job.partitions.validate_key(request.partition_key)
            except TickdError as exc:
                raise EvaluationError(f"{what}: {exc}") from None
        run_key = request.run_key
        if run_key is None and scheduled_for is not None:
            run_key = default_run_key(scheduled_for) + (f"#{unkeyed}" if unkeyed else "")
            unkeyed += 1
        # The most specific word wins: the request, then the instigator, then the job;
        # at each level `priority=` before the `tickd/priority` tag.
        request_tags = request.tags
        if request_tags or request.priority is not None:
            tags = {**base_tags, **request_tags}
            priority = base_priority
            if request.priority is not None or PRIORITY_TAG in request_tags:
                priority = priority_of(request_tags, request.priority)
            _settle_tags(tags, priority, defaults, instigator)
        else:
            tags, priority = dict(base_tags), base_priority
        runs.append(
            new_run(
                run_id=run_id,
                job=job_name,
                status=queued,
                instigator=instigator,
                created_at=now,
                priority=priority,
                tags=tags,
                run_config={**default_config, **request.run_config}
                if default_config or request.run_config
                else {},
                partition_key=request.partition_key,
                run_key=run_key,
                tick_id=tick_id,
            )
        )
    return runs


# Fewer requests than this are built into runs at once (`requested_runs`).
KEYED_MIN = 64


def requested_runs(
    what: str,
    requests: Sequence[RunRequest],
    *,
    jobs: Mapping[str, Job],
    instigator: Instigator,
    defaults: RunDefaults,
    now: datetime,
    ids: IdGenerator,
    tick_id: str | None = None,
    keyed: bool = False,
) -> list[Run] | KeyedRequests:
    """`build_runs` of a sensor's `requests`; with `keyed`, the requests checked as
    `build_runs` checks them but left for the store to build into runs once it knows
    which it needs (`KeyedRequests`), if there are at least KEYED_MIN and each has a
    run_key of its own and no partition, tags or priority of its own."""
    make = partial(
        build_runs,
        what,
        jobs=jobs,
        instigator=instigator,
        defaults=defaults,
        now=now,
        ids=ids,
        tick_id=tick_id,
    )
    if not keyed or len(requests) < KEYED_MIN:
        return make(requests)
    bases: dict[str | None, _Base] = {}
    names: list[str] = []
    keys: list[str] = []
    for request in requests:
        run_key = request.run_key
        if (
            run_key is None
            or request.partition_key is not None
            or request.tags
            or request.priority is not None
        ):
            return make(requests)
        job_name = request.job or defaults.job
        base = bases.get(job_name)
        if base is None:
            base = bases[job_name] = job_base(what, job_name, jobs, instigator, defaults)
        names.append(base[0])
        keys.append(run_key)
    if len(set(keys)) != len(keys):
        return make(requests)
    run_ids = ids.many(now, len(requests))

    def build(indices: Sequence[int]) -> list[Run]:
        return make(
            [requests[i] for i in indices],
            bases=dict(bases),  # its own: a store may build on another thread
            run_ids=[run_ids[i] for i in indices],
        )

    return KeyedRequests(jobs=tuple(names), run_keys=tuple(keys), build=build)


def job_base(
    what: str,
    job_name: str | None,
    jobs: Mapping[str, Job],
    instigator: Instigator,
    defaults: RunDefaults,
) -> _Base:
    """The job of a request and the tags and priority its job and instigator give it."""
    if job_name is None:
        raise EvaluationError(f"{what} made a RunRequest without job= and has no default job")
    job = jobs.get(job_name)
    if job is None:
        raise EvaluationError(
            f"{what} requested unknown job {job_name!r}; known jobs: {', '.join(sorted(jobs))}"
        )
    default_tags = defaults.tags or {}
    tags = {**job.tags, **default_tags}
    priority = 0
    for explicit, level_tags in ((job.priority, job.tags), (defaults.priority, default_tags)):
        if explicit is not None or PRIORITY_TAG in level_tags:
            priority = priority_of(level_tags, explicit)
    _settle_tags(tags, priority, defaults, instigator)
    return job_name, job, tags, priority


def _settle_tags(
    tags: dict[str, str], priority: int, defaults: RunDefaults, instigator: Instigator
) -> None:
    """The tags tickd sets itself: the priority (absent when 0), and the serial tag."""
    if priority:
        tags[PRIORITY_TAG] = str(priority)
    else:
        tags.pop(PRIORITY_TAG, None)
    if defaults.serial:
        tags[SERIAL_TAG] = instigator.name
