"""What evaluation functions return, and the dedup keys of the runs they ask for."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from daemon.domain.runs import Run


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def _job_name(job: str | _Named | None) -> str | None:
    if job is None or isinstance(job, str):
        return job
    return job.name


@dataclass(frozen=True, slots=True, init=False)
class RunRequest:
    """Ask for one run. A `run_key` makes it happen at most once per schedule or sensor."""

    job: str | None
    run_key: str | None
    partition_key: str | None
    run_config: Mapping[str, Any]
    tags: Mapping[str, str]
    priority: int | None

    def __init__(
        self,
        job: str | _Named | None = None,
        run_key: str | None = None,
        partition_key: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        priority: int | None = None,
    ) -> None:
        # Sensors make thousands a tick: set the slots directly, skip empty copies.
        _set_job(self, job if job is None or type(job) is str else _job_name(job))
        _set_run_key(self, run_key if run_key is None or type(run_key) is str else str(run_key))
        _set_partition_key(self, partition_key)
        _set_run_config(self, dict(run_config) if run_config else {})
        _set_tags(self, {str(k): str(v) for k, v in tags.items()} if tags else {})
        _set_priority(self, priority)

    @classmethod
    def for_partition(
        cls,
        partition_key: str,
        *,
        job: str | _Named | None = None,
        run_key: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        priority: int | None = None,
    ) -> RunRequest:
        return cls(
            job=job,
            run_key=run_key,
            partition_key=partition_key,
            run_config=run_config,
            tags=tags,
            priority=priority,
        )


def _slot_setter(name: str) -> Callable[[RunRequest, Any], None]:
    setter: Callable[[RunRequest, Any], None] = vars(RunRequest)[name].__set__
    return setter


_set_job = _slot_setter("job")
_set_run_key = _slot_setter("run_key")
_set_partition_key = _slot_setter("partition_key")
_set_run_config = _slot_setter("run_config")
_set_tags = _slot_setter("tags")
_set_priority = _slot_setter("priority")


@dataclass(frozen=True, slots=True)
class SkipReason:
    """Returned instead of run requests: nothing to do this tick, and why."""

    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorResult:
    run_requests: Sequence[RunRequest] = field(default_factory=tuple)
    cursor: str | None = None
    skip_reason: SkipReason | str | None = None


def default_run_key(scheduled_for: datetime) -> str:
    """The run_key a schedule tick gets when its request names none: the tick time."""
    if scheduled_for.tzinfo is not UTC:
        scheduled_for = scheduled_for.astimezone(UTC)
    return scheduled_for.isoformat()


RunKeyDedup = tuple[str, str, str]  # (instigator kind, instigator name, run_key)
PartitionDedup = tuple[str, str]  # (job, partition_key)


def run_key_dedup(run: Run) -> RunKeyDedup | None:
    """At most one run ever per (instigator, run_key)."""
    if run.run_key is None:
        return None
    # The kind is a StrEnum: it equals and hashes as its value, without the lookup.
    return (run.instigator.kind, run.instigator.name, run.run_key)


def partition_dedup(run: Run) -> PartitionDedup | None:
    """At most one active run per (job, partition_key)."""
    if run.partition_key is None:
        return None
    return (run.job, run.partition_key)


def _all_distinct(runs: list[Run]) -> bool:
    """Whether no two of `runs` share a dedup key (the common case, checked in bulk)."""
    keys = [run_key_dedup(r) for r in runs if r.run_key is not None]
    if len(set(keys)) != len(keys):
        return False
    partitions = [(r.job, r.partition_key) for r in runs if r.partition_key is not None]
    return len(set(partitions)) == len(partitions)


def collapse(runs: Iterable[Run]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """Collapse duplicates inside one batch: the first of each dedup key wins.

    Returns the kept runs in order and (duplicate, kept) pairs. The store still
    enforces every key against what it already holds; this only settles the batch.
    """
    runs = list(runs)
    if _all_distinct(runs):
        return runs, []
    kept: list[Run] = []
    dropped: list[tuple[Run, Run]] = []
    by_run_key: dict[RunKeyDedup, Run] = {}
    by_partition: dict[PartitionDedup, Run] = {}
    for run in runs:
        rk = run_key_dedup(run)
        pk = partition_dedup(run)
        winner = (by_run_key.get(rk) if rk else None) or (by_partition.get(pk) if pk else None)
        if winner is not None:
            dropped.append((run, winner))
            continue
        if rk:
            by_run_key[rk] = run
        if pk:
            by_partition[pk] = run
        kept.append(run)
    return kept, dropped
