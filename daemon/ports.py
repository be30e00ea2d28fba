"""The seams of tickd: the clock, the store and the executor, as Protocols.

The loops import these, never an adapter. Each method states its contract; the
contract suite in tests/contract/ holds every store adapter to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from daemon.domain.limits import ConcurrencyLimits
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import (
    Decision,
    InstigatorState,
    InstigatorStatus,
    Tick,
    TickCommit,
    TickStatus,
)
from daemon.errors import TickdError


class Clock(Protocol):
    """The only source of time. Every loop reads `now()` and sleeps through this."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Return once `now() >= deadline` (at once if it already is). Cancellable."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResult:
    """What `create_runs` did with a batch: created runs, and the others with the run
    that deduplicated each (outcome says whether by run_key, partition or batch)."""

    created: tuple[Run, ...] = ()
    deduplicated: tuple[tuple[Run, Decision], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQuery:
    statuses: tuple[RunStatus, ...] = ()
    job: str | None = None
    instigator: Instigator | None = None
    tags: Mapping[str, str] = field(default_factory=dict)  # every pair must match
    partition_key: str | None = None
    since: datetime | None = None  # created_at >= since
    limit: int | None = 100  # newest first


@dataclass(frozen=True, slots=True, kw_only=True)
class TickQuery:
    instigator_name: str | None = None
    statuses: tuple[TickStatus, ...] = ()
    since: datetime | None = None  # tick_at >= since
    around: datetime | None = None  # order by distance of tick_at to this
    limit: int | None = 100  # newest tick_at first (or nearest first with `around`)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How long to keep history; None keeps forever. Only finished runs are purged."""

    skipped_ticks: timedelta | None = timedelta(days=7)
    ticks: timedelta | None = timedelta(days=30)
    runs: timedelta | None = timedelta(days=90)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeCounts:
    ticks: int = 0
    runs: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """The right to tick on a store. `epoch` increases with every new holder."""

    holder: str  # node id
    epoch: int
    pid: int
    host: str
    since: datetime
    heartbeat_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMove:
    """One status change of a run, for `Store.transition_runs`."""

    run_id: str
    status: RunStatus
    now: datetime
    error: str | None = None
    event: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveAndClaim:
    """What `Store.move_and_claim` did: each move's result, in order (the moved run or
    that move's error), then the runs claimed, in queue order."""

    moved: tuple[Run | TickdError, ...] = ()
    claimed: tuple[Run, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    run_id: str
    seq: int
    at: datetime
    kind: str  # "run.enqueued", "run.started", ...
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    run_id: str
    seq: int
    at: datetime
    stream: str  # "stdout" | "stderr" | "log"
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class PreparedTicks:
    """Tick commits a store has prepared (`Store.prepare_ticks`): `commits` as given, and
    whatever the store made of them ahead (`made`, its own business)."""

    commits: Sequence[TickCommit]
    made: object = None


class Store(Protocol):
    """Durable state: runs, ticks, instigator state, the lease, run events and logs.

    Every write is atomic. Dedup is the store's job, enforced by unique constraints so it
    holds across processes: at most one run ever per (instigator kind, instigator name,
    run_key); at most one active (QUEUED/STARTING/RUNNING/CANCELING) run per
    (job, partition_key).
    """

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...

    # ---- runs ----------------------------------------------------------------------

    async def create_runs(self, runs: Sequence[Run]) -> CreateResult:
        """Insert QUEUED runs in one transaction, with dedup.

        Duplicates within `runs` collapse (the first wins, the others are reported
        DEDUPLICATED_IN_TICK against it); a run whose run_key or active partition is
        already taken is reported against the existing run. Order is preserved.
        """
        ...

    async def commit_ticks(
        self, commits: Sequence[TickCommit], *, lease_epoch: int | None = None
    ) -> list[Tick]:
        """Commit each tick with its runs and its instigator's state update, all in one
        transaction: either all of it persists or none.

        Runs are created with the same dedup as `create_runs`; the stored tick's
        decisions say, per request, created (run id) or deduplicated (by which run).
        With `lease_epoch`, raises LeaseLostError and writes nothing unless that epoch
        is the store's current lease. Returns the stored ticks in order.
        """
        ...

    async def prepare_ticks(self, commits: Sequence[TickCommit]) -> PreparedTicks:
        """Do ahead what a commit of `commits` can do before its time is known (building
        its rows, say), for `commit_prepared`. Writes nothing. From here on the commits
        are the store's: the caller changes nothing in them."""
        ...

    async def commit_prepared(
        self, prepared: PreparedTicks, *, at: datetime, lease_epoch: int | None = None
    ) -> list[Tick]:
        """`commit_ticks` of `prepared.commits` decided at `at`: every tick starts and ends
        at `at` and every run is created at `at` (the commits are stamped so, in place).
        The same dedup and atomicity as `commit_ticks`, whatever was made ahead."""
        ...

    async def claim_runs(
        self,
        *,
        node_id: str,
        limit: int,
        limits: ConcurrencyLimits,
        now: datetime,
    ) -> list[Run]:
        """Move up to `limit` QUEUED runs due by `now` (not_before <= now) to STARTING,
        owned by `node_id`, in queue order: priority descending, then created_at, then
        run_id. A run that a limit forbids is passed over, not waited on; limits count
        the runs in flight (STARTING/RUNNING/CANCELING) on every node plus those claimed
        in this call. Atomic: two claimers never claim one run.
        """
        ...

    async def transition_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        now: datetime,
        error: str | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> Run:
        """Move a run to `status` if legal (IllegalTransitionError otherwise,
        RunNotFoundError for an unknown id), set started_at / ended_at / error, and
        record a run event `run.<status>` with `event` as data. Returns the new run."""
        ...

    async def transition_runs(self, moves: Sequence[RunMove]) -> list[Run | TickdError]:
        """`transition_run` for many runs in one transaction (one fsync): each result is the
        moved run, or the error of that move (IllegalTransitionError, RunNotFoundError),
        which does not stop the others. Order is preserved."""
        ...

    async def move_and_claim(
        self,
        moves: Sequence[RunMove],
        *,
        node_id: str,
        limit: int,
        limits: ConcurrencyLimits,
        now: datetime,
        start: Callable[[Run], RunMove | None] | None = None,
    ) -> MoveAndClaim:
        """`transition_runs(moves)`, then `claim_runs(...)`, in one transaction (one
        fsync for a dispatcher's whole cycle). The claim counts what is in flight after
        the moves, so a run that finishes here frees its slot for the claim.

        With `start`, each claimed run is passed to it and the move it returns (None:
        none) is made in the same transaction, like any other move: a run is claimed and
        started in one commit, and `claimed` holds it as moved. `start` is called inside
        the transaction (for SQLite, on the connection's thread): it must be quick and
        pure."""
        ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, query: RunQuery) -> list[Run]:
        """Runs matching every given filter, newest (created_at, run_id) first."""
        ...

    async def active_runs_of(self, instigator: Instigator) -> list[Run]:
        """The runs of `instigator` not yet finished, oldest first (overlap policies)."""
        ...

    async def orphaned_runs(self, *, live_nodes: Sequence[str]) -> list[Run]:
        """Runs STARTING/RUNNING/CANCELING whose node is not in `live_nodes`."""
        ...

    async def next_due_at(self) -> datetime | None:
        """The earliest not_before among QUEUED runs that have one (delayed retries)."""
        ...

    # ---- ticks and instigators -------------------------------------------------------

    async def list_ticks(self, query: TickQuery) -> list[Tick]: ...

    async def get_tick(self, tick_id: str) -> Tick | None: ...

    async def instigator_states(self) -> Mapping[tuple[InstigatorKind, str], InstigatorState]:
        """Every stored instigator state, keyed by (kind, name): a read-only snapshot. A
        store may hand out the same object again while no state has changed, so a caller
        that gets the snapshot it had may skip looking through it (the scheduler does, at
        every heartbeat)."""
        ...

    async def set_instigator_status(
        self, instigator: Instigator, status: InstigatorStatus, *, now: datetime
    ) -> InstigatorState:
        """Record an operator's start or stop; it outlives restarts and reloads."""
        ...

    async def set_cursor(
        self, instigator: Instigator, cursor: str | None, *, now: datetime
    ) -> InstigatorState:
        """Overwrite (or clear, with None) a sensor's cursor."""
        ...

    async def ensure_instigators(self, instigators: Sequence[Instigator], *, now: datetime) -> None:
        """Give each instigator without stored state one, with last_tick_at = `now` (when it
        was first seen); leave existing state untouched. A new schedule thus does not catch
        up on the time before it was loaded, yet a crash before its first tick loses nothing.
        """
        ...

    # ---- housekeeping ------------------------------------------------------------------

    async def purge(self, *, now: datetime, retention: Retention) -> PurgeCounts:
        """Delete SKIPPED ticks older than retention.skipped_ticks, other ticks older than
        retention.ticks (by tick_at), finished runs (with their events and logs) older than
        retention.runs. Never deletes an active run."""
        ...

    async def change_token(self) -> int:
        """A cheap number that differs from its previous value whenever runs changed in
        this store since the last call, by any process (enqueue, status change)."""
        ...

    async def wait_for_change(self, token: int, *, max_wait: float) -> int:
        """Return a token once runs were changed by another process (or connection) since
        `token` was returned, or after `max_wait` seconds. Start with token -1 (returns at
        once). Woken by the store itself where it can be (SQLite: a doorbell socket that
        other processes ring after committing; PostgreSQL: LISTEN/NOTIFY), so the caller
        need not poll the queue. Changes made through this store object may be left out:
        their caller knows of them."""
        ...

    # ---- lease and heartbeat -------------------------------------------------------

    async def acquire_lease(
        self,
        *,
        holder: str,
        pid: int,
        host: str,
        now: datetime,
        ttl: timedelta,
        dead_holder: str | None = None,
    ) -> Lease:
        """Take the scheduler lease if free, lapsed (expires_at <= now), already ours, or
        held by `dead_holder` (a holder the caller has shown to be gone, e.g. its pid no
        longer exists on this host); a new holder gets epoch + 1. Raises LeaseHeldError
        naming the live holder."""
        ...

    async def renew_lease(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        """Heartbeat: extend our lease. Raises LeaseLostError if another holder took it."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up (on a clean stop) so a successor need not wait for it to lapse."""
        ...

    async def current_lease(self) -> Lease | None:
        """The lease as stored (possibly lapsed), for `tickd status`."""
        ...

    # ---- run events and logs --------------------------------------------------------

    async def add_run_event(
        self, run_id: str, kind: str, *, at: datetime, data: Mapping[str, Any] | None = None
    ) -> None: ...

    async def run_events(self, run_id: str) -> list[RunEvent]: ...

    async def append_logs(self, run_id: str, lines: Sequence[tuple[datetime, str, str]]) -> None:
        """Append (at, stream, text) lines of a run's output."""
        ...

    async def read_logs(self, run_id: str, *, after_seq: int = 0) -> list[LogLine]: ...


# ---- execution ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """How one execution of a run ended."""

    status: RunStatus  # SUCCESS, FAILURE, TIMED_OUT or CANCELED
    error: str | None = None  # one line a user understands, then details
    exit_code: int | None = None  # process executor: the worker's exit code …
    signal: int | None = None  # … or the signal that killed it


OutputSink = Callable[[Sequence[tuple[datetime, str, str]]], Awaitable[None]]
"""Receives (at, stream, text) lines of a run's output: stream is stdout, stderr or log."""


class Executor(Protocol):
    """Runs jobs. One executor per kind (process, thread, async) lives in the daemon."""

    async def execute(
        self,
        run: Run,
        *,
        time_limit: float | None,
        output: OutputSink,
    ) -> RunOutcome:
        """Run `run`'s job to the end and say how it ended. Never raises for a failure of
        the job itself (exception, exit, signal, timeout): that is the outcome. Returns
        TIMED_OUT after `time_limit` seconds, with the work stopped."""
        ...

    async def cancel(self, run_id: str) -> bool:
        """Stop the run's work now (killing its process tree where there is one); its
        `execute` then returns CANCELED. False if the run is not executing here."""
        ...

    async def aclose(self) -> None:
        """Stop workers; runs still executing are killed."""
        ...
