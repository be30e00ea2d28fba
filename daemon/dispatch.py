"""The dispatcher: claim queued runs in priority order under the limits, execute them,
record how they end, retry what may be retried.

It works in cycles of one store transaction each: the run moves asked for since the
last cycle (runs starting, runs finished), then a claim for the slots free after them,
so a burst of completions and the claims that refill their slots share one commit. It
claims only as many runs as it has free slots (work grows with free slots, not with the
queue), and wakes at once on an enqueue in this process, on a change another process
committed to the store (a cheap change token), or on a completion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import anyio
import structlog
from anyio.abc import TaskGroup

from daemon.definitions import ExecutorKind, Job
from daemon.domain.ids import IdGenerator
from daemon.domain.limits import ConcurrencyLimits, with_serial_limit
from daemon.domain.runs import (
    TIMEOUT_TAG,
    Instigator,
    InstigatorKind,
    Run,
    RunStatus,
)
from daemon.errors import StoreClosedError, StoreError, TickdError
from daemon.ports import Clock, Executor, RunMove, RunOutcome, Store

log = structlog.get_logger("tickd.dispatch")

T = TypeVar("T")

# The store wakes the dispatcher when another process changes runs (SQLite: a doorbell
# beside the file, or its change counter read every second where there can be none);
# a ring that went missing is made up for by reading the counter this often. An idle
# daemon wakes for this, so it is long.
CHANGE_FALLBACK_S = 30.0

# Group commit: a cycle with moves to write waits up to this long (real time) for runs
# still executing to report, so that completions close together share one commit.
COALESCE_S = 0.001

# A run's end (or its retry) that the store could not write is tried again after this.
STORE_RETRY = timedelta(seconds=1)

RECOVERED_REASON = "daemon stopped while run was active"

_EVENT_OF = {
    RunStatus.SUCCESS: "run.succeeded",
    RunStatus.FAILURE: "run.failed",
    RunStatus.TIMED_OUT: "run.timed_out",
    RunStatus.CANCELED: "run.canceled",
}


def retry_delay(job: Job, run: Run) -> timedelta:
    """Exponential backoff from job.retry_delay, doubled per attempt, with up to 25 %
    jitter derived from the run id (so a restart computes the same delay)."""
    base = job.retry_delay * (2 ** (run.attempt - 1))
    digest = hashlib.blake2b(run.run_id.encode(), digest_size=4).digest()
    return timedelta(seconds=base * (1 + 0.25 * int.from_bytes(digest) / 2**32))


def _queue_wait(run: Run, started: datetime) -> float:
    return (started - (run.not_before or run.created_at)).total_seconds()


def time_limit_of(job: Job | None, run: Run) -> float | None:
    """The run's timeout: the `tickd/timeout` tag if valid, else the job's."""
    raw = run.tags.get(TIMEOUT_TAG)
    if raw is not None:
        try:
            value = float(raw)
            if value > 0:
                return value
        except ValueError:
            pass
    return job.timeout if job is not None else None


class _Pending:
    """A move waiting for the next cycle's transaction."""

    __slots__ = ("done", "move", "result")

    def __init__(self, move: RunMove) -> None:
        self.move = move
        self.done = anyio.Event()
        self.result: Run | TickdError | None = None  # None: not written by a cycle


class Dispatcher:
    """Claims and executes runs for one node."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        executors: Mapping[ExecutorKind, Executor],
        jobs: Mapping[str, Job],
        node_id: str,
        limits: ConcurrencyLimits,
        default_executor: ExecutorKind = ExecutorKind.PROCESS,
        on_finished: Callable[[Run], Awaitable[None]] | None = None,
        ids: IdGenerator | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.executors = executors
        self.jobs = jobs
        self.node_id = node_id
        self.limits = with_serial_limit(limits)
        self.default_executor = default_executor
        self.on_finished = on_finished
        self._ids = ids or IdGenerator()
        self._active: dict[str, Run] = {}
        self._claiming = True
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._changed: anyio.Event | None = None  # set when runs end or we wait for work
        self._waiting = False  # blocked in _wait_for_work with nothing to claim
        self._cancel_reason: dict[str, str] = {}
        self._moves: list[_Pending] = []  # for the next cycle
        self._cycling = False  # run() writes the moves; otherwise they go straight out
        self._released: set[str] = set()  # active runs whose final move is written
        self._executor_of: dict[str, tuple[Job | None, Executor]] = {}  # by job name

    # ---- public ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        cap = self.limits.max_concurrent_runs
        return cap if cap is not None else 1_000_000

    @property
    def active_count(self) -> int:
        return len(self._active)

    def wake(self) -> None:
        """Something changed (an enqueue, a completion): look at the queue now."""
        self._wake.set()

    def replace_jobs(self, jobs: Mapping[str, Job]) -> None:
        self.jobs = jobs

    async def recover(self, *, live_nodes: Sequence[str]) -> list[Run]:
        """Fail the runs a dead daemon left STARTING/RUNNING/CANCELING (retrying those
        with attempts left), so no run stays "running" forever."""
        recovered = []
        for run in await self.store.orphaned_runs(live_nodes=live_nodes):
            now = self.clock.now()
            target = RunStatus.CANCELED if run.status is RunStatus.CANCELING else RunStatus.FAILURE
            try:
                done = await self.store.transition_run(
                    run.run_id,
                    target,
                    now=now,
                    error=RECOVERED_REASON,
                    event={"reason": RECOVERED_REASON, "node_id": run.node_id},
                )
            except TickdError:
                continue
            log.warning(
                "run.recovered",
                run_id=run.run_id,
                job=run.job,
                status=target.value,
                previous_node=run.node_id,
                reason=RECOVERED_REASON,
            )
            recovered.append(done)
            if target is RunStatus.FAILURE:
                await self._maybe_retry(done)
        return recovered

    async def run(self) -> None:
        """Claim and execute until cancelled; once `drain()` began, only record how the
        active runs end."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._watch_store)
            self._cycling = True
            try:
                while True:
                    await self._coalesce()
                    due = await self._cycle()
                    await self._wait_for_work(due)
            finally:
                self._cycling = False
                for pending in self._moves:
                    pending.done.set()  # result None: its caller writes it directly
                self._moves = []

    async def drain(self, deadline: float) -> None:
        """Stop claiming; let active runs finish for up to `deadline` seconds (real time),
        then cancel what is left with a recorded reason."""
        self._claiming = False
        self._wake.set()
        with anyio.move_on_after(deadline):
            while self._active:
                await self._change()
        for run_id, run in list(self._active.items()):
            log.warning("run.drain_canceled", run_id=run_id, job=run.job, drain_timeout_s=deadline)
            self._cancel_reason[run_id] = f"daemon stopping: drain timeout of {deadline:g}s passed"
            await self._executor_for(run).cancel(run_id)
        with anyio.move_on_after(10):
            while self._active:
                await self._change()

    async def wait_idle(self) -> None:
        """Until nothing executes and the dispatcher waits for work (tests)."""
        while self._active or not self._waiting or self._wake.is_set():
            await self._change()

    async def _change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _signal_change(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # ---- claiming ----------------------------------------------------------------------

    async def _cycle(self) -> datetime | None:
        """One transaction: the moves asked for since the last cycle, then a claim for the
        slots free after them. Returns when the next delayed run is due if the queue had
        fewer due runs than free slots (None: sleep until woken)."""
        self._wake = anyio.Event()
        batch, self._moves = self._moves, []
        free = 0
        if self._claiming:
            finishing = sum(1 for p in batch if p.move.status.is_terminal)
            free = self.capacity - (len(self._active) - len(self._released) - finishing)
        if not batch and free <= 0:
            return None
        now = self.clock.now()
        try:
            with anyio.CancelScope(shield=True):  # the moves' callers wait for their result
                done = await self.store.move_and_claim(
                    [p.move for p in batch],
                    node_id=self.node_id,
                    limit=max(free, 0),
                    limits=self.limits,
                    now=now,
                    start=partial(self._start_move, now=now),
                )
        except TickdError as exc:
            log.error("dispatch.cycle_failed", error=str(exc), moves=len(batch))
            for pending in batch:
                pending.result = exc
                pending.done.set()
            return None
        assert self._tg is not None
        for run in done.claimed:  # first, so that their work is under way (in threads,
            self._active[run.run_id] = run  # say) while the callers below carry on
            self._tg.start_soon(self._execute, run)
        for pending, result in zip(batch, done.moved, strict=True):
            if pending.move.status.is_terminal:
                self._released.add(pending.move.run_id)
            pending.result = result
            pending.done.set()
        if len(done.claimed) < free:
            return await self._next_delayed()
        return None

    async def _coalesce(self) -> None:
        """Give the runs still executing up to COALESCE_S to report before a cycle with
        moves to write (most runs started together end together)."""
        if not self._moves:
            return
        with anyio.move_on_after(COALESCE_S):
            while self._executing() > 0:
                self._wake = anyio.Event()
                await self._wake.wait()

    def _executing(self) -> int:
        """Active runs that have not asked for their final move yet."""
        finishing = sum(1 for p in self._moves if p.move.status.is_terminal)
        return len(self._active) - len(self._released) - finishing

    def _start_move(self, run: Run, now: datetime) -> RunMove | None:
        """The move to RUNNING of a run just claimed, made in the claim's transaction (it
        runs there, so: pure); None for a run whose job is not loaded (it fails from
        STARTING in `_execute`)."""
        return self._running_move(run, now) if run.job in self.jobs else None

    def _running_move(self, run: Run, now: datetime) -> RunMove:
        return RunMove(
            run_id=run.run_id,
            status=RunStatus.RUNNING,
            now=now,
            event={"queue_wait_s": round(_queue_wait(run, now), 6), "node_id": self.node_id},
        )

    async def _wait_for_work(self, due: datetime | None) -> None:
        """Sleep until woken, or until `due` (the earliest delayed run)."""
        self._waiting = True
        self._signal_change()
        try:
            if due is None:
                await self._wake.wait()
                return
            async with anyio.create_task_group() as tg:

                async def timer() -> None:
                    await self.clock.sleep_until(due)
                    self._wake.set()

                tg.start_soon(timer)
                await self._wake.wait()
                tg.cancel_scope.cancel()
        finally:
            self._waiting = False

    async def _move(self, move: RunMove) -> Run:
        """Write `move` in the next cycle's transaction, or directly when no cycle runs."""
        if self._cycling:
            pending = _Pending(move)
            self._moves.append(pending)
            self._wake.set()
            await pending.done.wait()
            if isinstance(pending.result, TickdError):
                raise pending.result
            if pending.result is not None:
                return pending.result
        return await self.store.transition_run(
            move.run_id, move.status, now=move.now, error=move.error, event=move.event
        )

    async def _next_delayed(self) -> datetime | None:
        try:
            return await self.store.next_due_at()
        except TickdError:
            return None

    async def _watch_store(self) -> None:
        """Wake when another process changed runs (an enqueue from the CLI or client, a
        cancel request), and forward cancel requests to executors."""
        token = -1  # the first wait returns at once with the store's current token
        while True:
            try:
                new = await self.store.wait_for_change(token, max_wait=CHANGE_FALLBACK_S)
            except TickdError as exc:
                log.error(
                    "dispatch.watch_failed", error=str(exc), retry_in_s=STORE_RETRY.total_seconds()
                )
                await self.clock.sleep_until(self.clock.now() + STORE_RETRY)
                continue
            if new != token:
                token = new
                await self._check_cancels()
                self._wake.set()

    async def _check_cancels(self) -> None:
        for run_id in list(self._active):
            run = await self.store.get_run(run_id)
            if run is not None and run.status is RunStatus.CANCELING:
                run_now = self._active.get(run_id)
                if run_now is not None:
                    await self._executor_for(run_now).cancel(run_id)

    # ---- executing ---------------------------------------------------------------------

    def _executor_for(self, run: Run) -> Executor:
        job = self.jobs.get(run.job)
        known = self._executor_of.get(run.job)
        if known is not None and known[0] is job:
            return known[1]
        executor = self._pick_executor(job)
        self._executor_of[run.job] = (job, executor)
        return executor

    def _pick_executor(self, job: Job | None) -> Executor:
        kind = (job.executor if job is not None else None) or self.default_executor
        if kind is ExecutorKind.ASYNC and job is not None and not job.is_async:
            kind = ExecutorKind.THREAD
        if kind is ExecutorKind.THREAD and job is not None and job.is_async:
            kind = ExecutorKind.ASYNC
        return self.executors.get(kind) or self.executors[self.default_executor]

    async def _execute(self, run: Run) -> None:
        try:
            await self._execute_inner(run)
        finally:
            self._active.pop(run.run_id, None)
            self._released.discard(run.run_id)
            self._wake.set()
            self._signal_change()

    async def _execute_inner(self, run: Run) -> None:
        job = self.jobs.get(run.job)
        if job is None:
            await self._finish(
                run,
                RunOutcome(
                    status=RunStatus.FAILURE,
                    error=f"job {run.job!r} is not defined in the loaded definitions",
                ),
                started=None,
            )
            return
        running = run
        started = run.started_at
        if run.status is not RunStatus.RUNNING or started is None:  # not started at claim
            started = self.clock.now()
            try:
                running = await self._move(self._running_move(run, started))
            except TickdError as exc:  # canceled before it started
                log.info("run.not_started", run_id=run.run_id, job=run.job, reason=str(exc))
                return
        queue_wait = _queue_wait(run, started)
        log.info(
            "run.started",
            run_id=run.run_id,
            job=run.job,
            attempt=run.attempt,
            instigator=run.instigator.name,
            queue_wait_s=round(queue_wait, 6),
        )
        executor = self._executor_for(run)

        async def output(lines: Sequence[tuple[datetime, str, str]]) -> None:
            try:
                await self.store.append_logs(run.run_id, lines)
            except TickdError as exc:
                log.error("run.output_lost", run_id=run.run_id, error=str(exc), lines=len(lines))

        try:
            outcome = await executor.execute(
                running, time_limit=time_limit_of(job, run), output=output
            )
        except Exception as exc:  # an executor bug must cost this run only
            outcome = RunOutcome(
                status=RunStatus.FAILURE, error=f"executor failed: {type(exc).__name__}: {exc}"
            )
        await self._finish(running, outcome, started=started)

    async def _finish(self, run: Run, outcome: RunOutcome, *, started: datetime | None) -> None:
        now = self.clock.now()
        duration = (now - started).total_seconds() if started else 0.0
        # A cancel request (CANCELING, with the operator's reason) is only of interest when
        # the run did not simply succeed.
        succeeded = outcome.status is RunStatus.SUCCESS
        current = None if succeeded else await self.store.get_run(run.run_id)
        status = outcome.status
        if current is not None and current.status is RunStatus.CANCELING:
            status = RunStatus.CANCELED if status is not RunStatus.SUCCESS else status
        error = outcome.error
        if status is RunStatus.CANCELED:
            error = (
                self._cancel_reason.pop(run.run_id, None)
                or (current.error if current is not None else None)
                or error
            )
        data: dict[str, object] = {"duration_s": round(duration, 6)}
        if outcome.exit_code is not None:
            data["exit_code"] = outcome.exit_code
        if outcome.signal is not None:
            data["signal"] = outcome.signal
        move = RunMove(run_id=run.run_id, status=status, now=now, error=error, event=data)
        with anyio.CancelScope(shield=True):
            try:
                done = await self._persist(
                    "run.finish_failed", run.run_id, partial(self._move, move)
                )
            except TickdError as exc:  # decided elsewhere (a cancel won), or the store closed
                log.error("run.finish_failed", run_id=run.run_id, error=str(exc))
                return
            fields: dict[str, object] = {
                "run_id": run.run_id,
                "job": run.job,
                "attempt": run.attempt,
                "instigator": run.instigator.name,
                "duration_s": round(duration, 6),
            }
            if error:
                fields["error"] = error.splitlines()[0]
            level = "info" if status is RunStatus.SUCCESS else "warning"
            getattr(log, level)(_EVENT_OF.get(status, "run.finished"), **fields)
            if status in (RunStatus.FAILURE, RunStatus.TIMED_OUT):
                await self._maybe_retry(done)
            if self.on_finished is not None:
                try:
                    await self.on_finished(done)
                except Exception as exc:  # a run-status sensor problem is not ours
                    log.error("run.finished_hook_failed", run_id=run.run_id, error=str(exc))

    async def _persist(self, event: str, run_id: str, write: Callable[[], Awaitable[T]]) -> T:
        """`write()`, tried again every STORE_RETRY while the store cannot write (a full
        disk, another process holding the lock too long, I/O errors), so that how a run
        ended is not dropped while the daemon runs; once the dispatcher has stopped, the
        error is raised (recovery at the next start settles the run). Other errors (the
        run moved on meanwhile) are raised at once."""
        while True:
            try:
                return await write()
            except StoreClosedError:
                raise
            except StoreError as exc:
                if not self._cycling:
                    raise
                log.error(
                    event, run_id=run_id, error=str(exc), retry_in_s=STORE_RETRY.total_seconds()
                )
            await self.clock.sleep_until(self.clock.now() + STORE_RETRY)

    async def _maybe_retry(self, run: Run) -> None:
        job = self.jobs.get(run.job)
        if job is None or run.attempt > job.max_retries:
            return
        now = self.clock.now()
        delay = retry_delay(job, run)
        retry = replace(
            run,
            run_id=self._ids.new(now),
            status=RunStatus.QUEUED,
            instigator=Instigator(kind=InstigatorKind.RETRY, name=run.job),
            run_key=run.run_id,  # one retry per failed run, even across a crash
            created_at=now,
            started_at=None,
            ended_at=None,
            error=None,
            attempt=run.attempt + 1,
            parent_run_id=run.run_id,
            not_before=now + delay,
            node_id=None,
        )
        result = await self._persist(
            "run.retry_failed", run.run_id, partial(self.store.create_runs, [retry])
        )
        if result.created:
            log.info(
                "run.retried",
                run_id=run.run_id,
                retry_run_id=retry.run_id,
                job=run.job,
                attempt=retry.attempt,
                delay_s=round(delay.total_seconds(), 3),
            )
            await self._persist(
                "run.retry_failed",
                run.run_id,
                partial(
                    self.store.add_run_event,
                    run.run_id,
                    "run.retried",
                    at=now,
                    data={"retry_run_id": retry.run_id, "delay_s": delay.total_seconds()},
                ),
            )
        self._wake.set()
