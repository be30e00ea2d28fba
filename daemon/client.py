"""The Python client: queue, watch and cancel runs from code outside the daemon.

    from daemon.client import Client

    with Client.open("/var/lib/tickd/tickd.db") as tickd:
        run = tickd.submit("refresh_warehouse", run_config={"full": True}, run_key="2026-03-14")
        done = tickd.wait(run.run_id, timeout=600)
        print(done.status)

`AsyncClient` is the same API for async code (`async with await AsyncClient.open(...)`).
Both talk to the store directly, so they work from any process that can open it; the
store wakes a running `tickd serve` when runs change (on SQLite, a doorbell socket beside
the file), and it starts a submitted run within milliseconds. `wait` polls the run (every
`poll` seconds) rather than listening for changes: the listening end belongs to the daemon.

The client does not load the definitions: it checks nothing about a job but its name, and
does not add the tags or priority a `@job(...)` declares (pass them yourself, or use
`tickd trigger`, which does), so a tag limit on a job's own tags does not see runs
submitted here without them.

Dedup is the store's: a `run_key` is used at most once per job for manual submissions
(the instigator is `manual:<job>`), and a partition has at most one active run; a
deduplicated submission returns the run that already holds the key.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

from daemon.adapters.system_clock import SystemClock
from daemon.config import Config, resolve_config
from daemon.domain.ids import new_id
from daemon.domain.runs import (
    PRIORITY_TAG,
    Instigator,
    InstigatorKind,
    Run,
    RunStatus,
    priority_of,
)
from daemon.domain.ticks import Outcome
from daemon.errors import IllegalTransitionError, RunNotFoundError, StoreLocationError
from daemon.ports import Clock, RunQuery, Store

P = ParamSpec("P")
T = TypeVar("T")

CANCEL_REASON = "canceled on request"
_CANCEL_ATTEMPTS = 5  # a run may move under us (QUEUED -> STARTING) between read and write


class RunFinishedError(IllegalTransitionError):
    """Asked to cancel a run that has already finished."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.run_id, run.status.value, RunStatus.CANCELED.value)
        self.run = run
        self.args = (f"run {run.run_id} already finished with {run.status.value}",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """What became of one run handed to `enqueue`."""

    requested: Run  # the run as built by the caller
    run: Run  # the run now in the store: `requested`, or the one that deduplicated it
    outcome: Outcome  # CREATED or DEDUPLICATED_*

    @property
    def created(self) -> bool:
        return self.outcome is Outcome.CREATED


def manual_instigator(job: str) -> Instigator:
    """Who asks for a run submitted by a person or a program: `manual:<job>`."""
    return Instigator(kind=InstigatorKind.MANUAL, name=job)


def new_run(
    job: str,
    *,
    now: datetime,
    instigator: Instigator | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    priority: int | None = None,
    partition_key: str | None = None,
    run_key: str | None = None,
    parent_run_id: str | None = None,
) -> Run:
    """A QUEUED run (not stored). `priority` wins over a `tickd/priority` tag; either way
    the run carries both `priority` and the tag (the tag is left out at priority 0)."""
    if not isinstance(job, str) or not job.strip():
        raise ValueError(f"job must be a non-empty job name, got {job!r}")
    for name, value in (("partition_key", partition_key), ("run_key", run_key)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
    merged = {str(k): str(v) for k, v in (tags or {}).items()}
    if priority is None and PRIORITY_TAG in merged:
        try:
            int(merged[PRIORITY_TAG])
        except ValueError:
            raise ValueError(
                f"tag {PRIORITY_TAG}={merged[PRIORITY_TAG]!r} is not an integer"
            ) from None
    level = priority_of(merged, priority)
    if level:
        merged[PRIORITY_TAG] = str(level)
    else:
        merged.pop(PRIORITY_TAG, None)
    return Run(
        run_id=new_id(now),
        job=job,
        status=RunStatus.QUEUED,
        instigator=instigator or manual_instigator(job),
        created_at=now,
        priority=level,
        tags=merged,
        run_config=dict(run_config or {}),
        partition_key=partition_key,
        run_key=run_key,
        parent_run_id=parent_run_id,
    )


def rerun_of(original: Run, *, now: datetime) -> Run:
    """A new MANUAL run of `original`'s job with its run_config, tags, priority and
    partition; `parent_run_id` names the original, attempt starts at 1, no run_key."""
    return new_run(
        original.job,
        now=now,
        run_config=original.run_config,
        tags=original.tags,
        priority=original.priority,
        partition_key=original.partition_key,
        parent_run_id=original.run_id,
    )


async def open_existing_store(location: str, *, create: bool = False) -> Store:
    """The store at `location`; a missing SQLite file is an error unless `create`, so a
    mistyped path fails instead of queueing runs no daemon will ever see."""
    from daemon.adapters.open_store import open_store

    if not create and await anyio.to_thread.run_sync(_missing_file, location):
        raise StoreLocationError(
            location, "no store there yet; start `tickd serve` first or fix the path"
        )
    return await open_store(location)


def _missing_file(location: str) -> bool:
    """Whether `location` is a file path (not a URL) where nothing exists yet."""
    if "://" in location or location == ":memory:":
        return False
    return not Path(location).expanduser().exists()


class AsyncClient:
    """Submit, inspect, wait for and cancel runs in a tickd store, from async code."""

    def __init__(self, store: Store, *, clock: Clock | None = None, close_store: bool = True):
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._close_store = close_store

    @classmethod
    async def open(
        cls, store: str | None = None, *, config: Config | None = None, create: bool = False
    ) -> AsyncClient:
        """A client on `store` (a path or URL), else the configured one: `config.store`,
        else what `tickd` itself would use (TICKD_STORE, ./tickd.toml, ./var/tickd.db).
        A missing store file raises StoreLocationError unless `create=True`."""
        location = store or (config or resolve_config()).store
        return cls(await open_existing_store(location, create=create))

    async def close(self) -> None:
        if self._close_store:
            await self.store.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- submitting ----------------------------------------------------------------------

    async def submit(
        self,
        job: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        priority: int | None = None,
        partition_key: str | None = None,
        run_key: str | None = None,
    ) -> Run:
        """Queue a MANUAL run of `job` and return it; or, when `run_key` was already used
        for this job or the partition has an active run, return that existing run."""
        run = new_run(
            job,
            now=self.clock.now(),
            run_config=run_config,
            tags=tags,
            priority=priority,
            partition_key=partition_key,
            run_key=run_key,
        )
        (submission,) = await self.enqueue([run])
        return submission.run

    async def rerun(self, run_id: str) -> Run:
        """Queue a new MANUAL run like `run_id` (see `rerun_of`); the existing run when its
        partition already has an active run."""
        original = await self._existing(run_id)
        (submission,) = await self.enqueue([rerun_of(original, now=self.clock.now())])
        return submission.run

    async def enqueue(self, runs: Sequence[Run]) -> builtins.list[Submission]:
        """Store QUEUED runs built by the caller (`new_run`, `rerun_of`) in one transaction,
        with the store's dedup; one Submission per run, in order."""
        if not runs:
            return []
        result = await self.store.create_runs(runs)
        created = {r.run_id for r in result.created}
        decisions = {requested.run_id: decision for requested, decision in result.deduplicated}
        out: builtins.list[Submission] = []
        for run in runs:
            if run.run_id in created:
                out.append(Submission(requested=run, run=run, outcome=Outcome.CREATED))
                continue
            decision = decisions[run.run_id]
            existing = await self.store.get_run(decision.run_id)
            if existing is None:  # purged in between: report what the store decided
                raise RunNotFoundError(decision.run_id)
            out.append(Submission(requested=run, run=existing, outcome=decision.outcome))
        return out

    # ---- reading -------------------------------------------------------------------------

    async def get(self, run_id: str) -> Run | None:
        return await self.store.get_run(run_id)

    async def list(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        job: str | None = None,
        tags: Mapping[str, str] | None = None,
        partition_key: str | None = None,
        instigator: Instigator | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = 100,
    ) -> builtins.list[Run]:
        """Runs matching every filter given, newest first. `since` is a time, or an age."""
        if isinstance(since, timedelta):
            since = self.clock.now() - since
        return await self.store.list_runs(
            RunQuery(
                statuses=_statuses(status),
                job=job,
                tags=dict(tags or {}),
                partition_key=partition_key,
                instigator=instigator,
                since=since,
                limit=limit,
            )
        )

    async def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as Client.wait)
        poll: float = 0.1,
    ) -> Run:
        """The run once it has finished. RunNotFoundError for an unknown id; TimeoutError
        when it has not finished after `timeout` seconds."""
        if poll <= 0:
            raise ValueError(f"poll must be a positive number of seconds, got {poll!r}")
        run = await self._existing(run_id)
        try:
            with anyio.fail_after(timeout):
                while not run.status.is_terminal:
                    await anyio.sleep(poll)
                    run = await self._existing(run_id)
        except TimeoutError:
            raise TimeoutError(
                f"run {run_id} is still {run.status.value} after {timeout:g}s"
            ) from None
        return run

    # ---- controlling ---------------------------------------------------------------------

    async def cancel(self, run_id: str, *, reason: str = CANCEL_REASON) -> Run:
        """Cancel a run: QUEUED becomes CANCELED at once; STARTING or RUNNING becomes
        CANCELING, and the daemon executing it kills it and marks it CANCELED. A run already
        CANCELING is returned as it is. RunFinishedError when it has already finished."""
        for _ in range(_CANCEL_ATTEMPTS):
            run = await self._existing(run_id)
            if run.status is RunStatus.CANCELING:
                return run
            if run.status.is_terminal:
                raise RunFinishedError(run)
            target = RunStatus.CANCELED if run.status is RunStatus.QUEUED else RunStatus.CANCELING
            try:
                return await self.store.transition_run(
                    run_id,
                    target,
                    now=self.clock.now(),
                    error=reason,
                    event={"reason": reason},
                )
            except IllegalTransitionError:
                continue  # it moved meanwhile (claimed, finished): look again
        run = await self._existing(run_id)
        if run.status.is_terminal:
            raise RunFinishedError(run)
        return run

    async def _existing(self, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run


def _statuses(
    status: RunStatus | str | Iterable[RunStatus | str] | None,
) -> tuple[RunStatus, ...]:
    if status is None:
        return ()
    items = [status] if isinstance(status, str) else builtins.list(status)
    out = []
    for item in items:
        try:
            out.append(RunStatus(str(item).upper()))
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise ValueError(f"{item!r} is not a run status; use one of {allowed}") from None
    return tuple(out)


class Client:
    """The synchronous client: `AsyncClient` run on a private event loop in a thread.

    Open it with `Client.open(...)` and close it (or use `with`); it is safe to share
    between threads.
    """

    def __init__(
        self, portal: BlockingPortal, manager: AbstractContextManager[Any], inner: AsyncClient
    ) -> None:
        self._portal = portal
        self._manager = manager
        self._inner = inner
        self._closed = False

    @classmethod
    def open(
        cls, store: str | None = None, *, config: Config | None = None, create: bool = False
    ) -> Client:
        """A client on `store`, else the configured store; see `AsyncClient.open`."""
        manager = start_blocking_portal(backend="asyncio")  # aiosqlite needs asyncio
        portal = manager.__enter__()
        try:
            opener = functools.partial(AsyncClient.open, store, config=config, create=create)
            inner = portal.call(opener)
        except BaseException as exc:
            manager.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return cls(portal, manager, inner)

    @property
    def aio(self) -> AsyncClient:
        """The async client underneath (its store lives on this client's loop)."""
        return self._inner

    def _call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    def submit(
        self,
        job: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        priority: int | None = None,
        partition_key: str | None = None,
        run_key: str | None = None,
    ) -> Run:
        """See `AsyncClient.submit`."""
        return self._call(
            self._inner.submit,
            job,
            run_config=run_config,
            tags=tags,
            priority=priority,
            partition_key=partition_key,
            run_key=run_key,
        )

    def rerun(self, run_id: str) -> Run:
        """See `AsyncClient.rerun`."""
        return self._call(self._inner.rerun, run_id)

    def enqueue(self, runs: Sequence[Run]) -> builtins.list[Submission]:
        """See `AsyncClient.enqueue`."""
        return self._call(self._inner.enqueue, runs)

    def get(self, run_id: str) -> Run | None:
        return self._call(self._inner.get, run_id)

    def list(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        job: str | None = None,
        tags: Mapping[str, str] | None = None,
        partition_key: str | None = None,
        instigator: Instigator | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = 100,
    ) -> builtins.list[Run]:
        """See `AsyncClient.list`."""
        return self._call(
            self._inner.list,
            status=status,
            job=job,
            tags=tags,
            partition_key=partition_key,
            instigator=instigator,
            since=since,
            limit=limit,
        )

    def wait(self, run_id: str, *, timeout: float | None = None, poll: float = 0.1) -> Run:
        """See `AsyncClient.wait`."""
        return self._call(self._inner.wait, run_id, timeout=timeout, poll=poll)

    def cancel(self, run_id: str, *, reason: str = CANCEL_REASON) -> Run:
        """See `AsyncClient.cancel`."""
        return self._call(self._inner.cancel, run_id, reason=reason)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._inner.close)
        finally:
            self._manager.__exit__(None, None, None)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "AsyncClient",
    "Client",
    "RunFinishedError",
    "Submission",
    "manual_instigator",
    "new_run",
    "rerun_of",
]
