"""The scheduler loop: a heap of next-due times, evaluations, and group commits.

It sleeps until the earliest due schedule or sensor (or until woken by a change),
starts one evaluation task per due instigator (bounded), and hands what they evaluated
to the committer (`daemon.committer`), which writes whatever has finished in one store
transaction. A slow sensor therefore never delays the others: nothing waits for a batch
to fill. Plain schedules due together at a boundary are decided, and their commit
prepared, up to a second ahead of it (`_prepare`).

Imports ports, never adapters.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel
import structlog
from anyio.abc import TaskGroup

from daemon.committer import COMMIT_RETRY, Committer, Pending
from daemon.definitions import Job, RunStatusSensor, Schedule, Sensor
from daemon.domain.firing import Overlap, jitter_offset
from daemon.domain.ids import IdGenerator
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import (
    InstigatorState,
    InstigatorStatus,
    Outcome,
    TickCommit,
    stamp,
)
from daemon.errors import LeaseLostError, TickdError
from daemon.evaluation import SyncCall
from daemon.ports import Clock, PreparedTicks, Store
from daemon.ticking import (
    Evaluator,
    is_plain,
    next_fire_time,
    schedule_instigator,
)

log = structlog.get_logger("tickd.loop")

Key = tuple[InstigatorKind, str]
_SCHEDULE = InstigatorKind.SCHEDULE
_CREATED = Outcome.CREATED

# Due schedules without a function are evaluated in chunks of this many; each chunk goes
# to the committer as soon as it is built, so the store commits one chunk while the next
# is built.
PLAIN_CHUNK = 256

# Plain schedules due at the next boundary are decided up to PREPARE_AHEAD before it, so
# that at the boundary only their commit is left (their times are set then): when at least
# PREPARE_COUNT instigators are due at it and it is at least PREPARE_MIN away.
PREPARE_AHEAD = timedelta(seconds=1)
PREPARE_MIN = timedelta(milliseconds=20)
PREPARE_COUNT = 32  # fewer due at one boundary are decided when it comes

# More entries due at once than this are taken off the heap in one pass, not popped.
BULK_POP = 64


class Definitions(Protocol):
    """What the loop reads of the loaded definitions."""

    @property
    def jobs(self) -> Mapping[str, Job]: ...
    @property
    def schedules(self) -> Mapping[str, Schedule]: ...
    @property
    def sensors(self) -> Mapping[str, Sensor]: ...
    @property
    def run_status_sensors(self) -> Mapping[str, RunStatusSensor]: ...


@dataclass(slots=True)
class _Prepared:
    """A plain schedule's ticks decided ahead of the boundary `for_`: good at the boundary
    while the definition is the same object, its last tick is `last`, and the clock is
    before `until` (its next fire time after the boundary, when more would be due). Its
    `pending` is made ahead too, ready for the committer."""

    schedule: Schedule
    last: datetime
    until: datetime
    pending: Pending


@dataclass(frozen=True, slots=True, eq=False)
class _Boundary:
    """The plain schedules due at `at`, decided ahead (`_prepare`), with their commit
    prepared by the store (`made`). Taken whole at `at` if every one is due as it was
    prepared (the same heap generation), nothing else changed meanwhile, and the clock is
    before `until` (the earliest next fire time after `at`): then only the commit is left.
    """

    at: datetime
    until: datetime
    gens: dict[Key, int]
    pendings: list[Pending]
    made: PreparedTicks


class Scheduler:
    """Evaluates due schedules and sensors and commits their ticks atomically."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        definitions: Definitions,
        lease_epoch: int | None = None,
        max_concurrent_evaluations: int = 16,
        ids: IdGenerator | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.lease_epoch = lease_epoch
        self._defs = definitions
        self._ids = ids or IdGenerator()
        self._heap: list[tuple[datetime, int, Key, int]] = []
        self._seq = itertools.count()
        self._generation: dict[Key, int] = {}
        self._states: dict[Key, InstigatorState] = {}
        self._states_read: Mapping[Key, InstigatorState] | None = None  # the store's last
        self._first_seen: dict[Key, datetime] = {}
        self._restarted_at: dict[Key, datetime] = {}
        self._inflight: set[Key] = set()
        self._abandoned: dict[str, SyncCall] = {}
        self._eval_limiter = anyio.CapacityLimiter(max_concurrent_evaluations)
        self._thread_limiter = anyio.CapacityLimiter(max(4, max_concurrent_evaluations))
        self._committer: Committer | None = None
        self._sleep_scope: anyio.CancelScope | None = None
        self._wakeup: anyio.Event | None = None  # set by wake() while nothing is due
        self._wake_pending = False
        self._sleeping = False
        self._sleep_deadline: datetime | None = None
        self._busy = 0
        self._idle = anyio.Event()
        self._tg: TaskGroup | None = None
        self._evaluator = self._make_evaluator()
        # Decisions made ahead (`_prepare`) by an evaluator with ids of its own, so that
        # ids made for the boundary do not hold back the ids made before it.
        self._preparer = self._make_evaluator(IdGenerator())
        self._prepared: dict[str, _Prepared] = {}
        self._prepared_for: datetime | None = None
        self._boundary: _Boundary | None = None
        self._lasts_moved = 0  # times a refresh moved a last tick under the loop
        self._log: structlog.typing.FilteringBoundLogger = log

    # ---- public surface ------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled. Raises LeaseLostError if another daemon took over."""
        await self._register_schedules()
        await self.refresh_states()
        self._log = log.bind()  # bound once: a tick's log line is on the hot path
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._committer = Committer(
                self.store,
                tg=tg,
                work=self._work,
                logger=self._log,
                lease_epoch=self.lease_epoch,
                on_enqueued=self.on_enqueued,
            )
            tg.start_soon(self._committer.run)
            self._rebuild_heap()
            log.info(
                "scheduler.started",
                **self.status_counts(),
                next_due=self._heap[0][0].isoformat() if self._heap else None,
            )
            await self._main()

    def wake(self) -> None:
        """Re-read the heap now (after a change of definitions or states)."""
        self._wake_pending = True
        self._sleeping = False
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()
        if self._wakeup is not None:
            self._wakeup.set()

    async def replace_definitions(self, definitions: Definitions) -> None:
        """Swap in reloaded definitions. State and history are kept; removed instigators
        stop ticking; evaluations already running finish and commit."""
        self._defs = definitions
        self._evaluator = self._make_evaluator()
        self._preparer = self._make_evaluator(IdGenerator())
        self._prepared, self._prepared_for, self._boundary = {}, None, None
        await self._register_schedules()
        await self.refresh_states()
        self._rebuild_heap()
        self.wake()

    async def _register_schedules(self) -> None:
        """Store when each schedule was first seen, so that a crash before its first tick
        still catches up (and a new schedule does not catch up on its own past)."""
        await self.store.ensure_instigators(
            [schedule_instigator(name) for name in self._defs.schedules], now=self.clock.now()
        )

    async def refresh_states(self) -> None:
        """Re-read instigator states (an operator's start/stop, a cursor set from the CLI)."""
        states = await self.store.instigator_states()
        if states is self._states_read:  # the store's same snapshot: nothing changed
            return
        self._states_read = states
        now = self.clock.now()
        changed = False
        for key, state in states.items():
            old = self._states.get(key)
            if old is None or old.status != state.status or old.cursor != state.cursor:
                changed = True
            elif old.last_tick_at != state.last_tick_at:
                self._boundary = None  # decided from the old one
                self._lasts_moved += 1
            sched = self._defs.schedules.get(key[1]) if key[0] is InstigatorKind.SCHEDULE else None
            if (
                sched is not None
                and self._tg is not None
                and not self._is_running(key, sched.default_status)
                and _effective(state, sched.default_status) is InstigatorStatus.RUNNING
            ):
                # Started again: the ticks of the stopped stretch are not caught up.
                self._restarted_at[key] = now
            if key not in self._inflight:
                self._states[key] = state
        if changed and self._tg is not None:
            self._rebuild_heap()
            self.wake()

    async def wait_idle(self) -> None:
        """Return once the loop sleeps with no evaluation or commit in progress (tests, and
        the daemon before it freezes its long-lived objects)."""
        while not self._is_idle():
            self._idle = anyio.Event()
            await self._idle.wait()

    def status_counts(self) -> dict[str, int]:
        d = self._defs
        return {
            "schedules": len(d.schedules),
            "sensors": len(d.sensors) + len(d.run_status_sensors),
            "jobs": len(d.jobs),
        }

    async def run_finished(self, run: Run) -> None:
        """Evaluate the run-status sensors watching `run`'s job and status."""
        for sensor in list(self._defs.run_status_sensors.values()):
            key: Key = (InstigatorKind.SENSOR, sensor.name)
            if not self._is_running(key, sensor.default_status):
                continue
            if sensor.watched_job_names and run.job not in sensor.watched_job_names:
                continue
            if run.status not in sensor.statuses:
                continue
            commit = await self._evaluator.sensor_tick(sensor, cursor=None, finished_run=run)
            await self._commit(key, [commit])

    # ---- the loop --------------------------------------------------------------------

    async def _main(self) -> None:
        assert self._tg is not None
        while True:
            now = self.clock.now()
            plain: list[Schedule] = []
            generation, inflight, schedules = self._generation, self._inflight, self._defs.schedules
            boundary, due = self._take_boundary(now, self._pop_due(now))
            for _, _, key, gen in due:  # thousands at a fan-out: kept lean
                if generation.get(key) != gen or key in inflight:
                    continue
                inflight.add(key)
                self._busy += 1
                sched = schedules.get(key[1]) if key[0] is _SCHEDULE else None
                if sched is not None and is_plain(sched):
                    plain.append(sched)
                else:
                    self._tg.start_soon(self._evaluate, key)
            if boundary is not None or plain:
                many = boundary is not None or len(plain) >= PREPARE_COUNT
                with _collector_paused() if many else nullcontext():
                    if boundary is not None:
                        await self._commit_boundary(boundary, now)
                    if plain:
                        await self._evaluate_plain(plain)
                continue  # that took a while: see what is due now
            deadline = self._heap[0][0] if self._heap else None
            if deadline is not None and deadline != self._prepared_for:
                ahead = deadline - now
                if ahead < PREPARE_MIN or not self._worth_preparing(deadline):
                    self._prepared_for = deadline  # decided when it comes
                elif ahead > PREPARE_AHEAD:  # wake up to prepare it
                    deadline -= PREPARE_AHEAD
                else:
                    self._prepared_for = deadline
                    self._busy += 1
                    self._tg.start_soon(self._prepare, deadline)
            self._sleep_deadline = deadline
            if not self._wake_pending:  # else the heap changed meanwhile: look again
                self._sleeping = True
                self._check_idle()
                if deadline is None:
                    # Only wake() ends this sleep: an event is cheaper than a cancel scope.
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                else:
                    with anyio.CancelScope() as scope:
                        self._sleep_scope = scope
                        await self.clock.sleep_until(deadline)
            self._wakeup = None
            self._sleeping = False
            self._sleep_scope = None
            self._wake_pending = False

    def _pop_due(self, now: datetime) -> list[tuple[datetime, int, Key, int]]:
        """The heap's entries due at `now`, in heap order. A few are popped one by one; a
        boundary that many share (a fan-out) splits the heap in one pass instead, which
        costs a fraction of ten thousand pops."""
        heap = self._heap
        due: list[tuple[datetime, int, Key, int]] = []
        while heap and heap[0][0] <= now:
            if len(due) == BULK_POP:
                due += sorted(e for e in heap if e[0] <= now)
                heap[:] = [e for e in heap if e[0] > now]
                heapq.heapify(heap)
                break
            due.append(heapq.heappop(heap))
        return due

    def _take_boundary(
        self, now: datetime, due: list[tuple[datetime, int, Key, int]]
    ) -> tuple[_Boundary | None, list[tuple[datetime, int, Key, int]]]:
        """The boundary prepared whole (`_Boundary`) if it is due and still good, and the
        entries of `due` it does not cover; else None and `due`."""
        boundary = self._boundary
        if boundary is None or now < boundary.at:
            return None, due
        self._boundary = None
        if now >= boundary.until:
            return None, due
        gens, generation, inflight = boundary.gens, self._generation, self._inflight
        rest = [
            e
            for e in due
            if gens.get(e[2]) != e[3] or generation.get(e[2]) != e[3] or e[2] in inflight
        ]
        if len(due) - len(rest) != len(gens):
            return None, due
        return boundary, rest

    async def _commit_boundary(self, boundary: _Boundary, now: datetime) -> None:
        """Commit a boundary's ticks as prepared, decided `now`; each schedule hears how
        through its pending's `_plain_committed`."""
        pendings = boundary.pendings
        self._prepared = {}  # all of them taken
        self._inflight.update(p.key for p in pendings)
        self._busy += len(pendings)
        assert self._committer is not None, "the scheduler is not running"
        await self._committer.commit(pendings, prepared=(boundary.made, now))

    def _rebuild_heap(self) -> None:
        """Recompute every instigator's next due time (after load, reload or a state change)."""
        self._boundary = None
        self._heap.clear()
        now = self.clock.now()
        for sched in self._defs.schedules.values():
            key: Key = (InstigatorKind.SCHEDULE, sched.name)
            self._first_seen.setdefault(key, now)
            self._push(key, self._schedule_due(sched))
        for sensor in self._defs.sensors.values():
            key = (InstigatorKind.SENSOR, sensor.name)
            self._push(key, self._sensor_due(sensor))

    def _reschedule(self, key: Key, due: datetime | None, committed: bool) -> None:
        """Queue the next evaluation; after a failed commit, not before COMMIT_RETRY."""
        if not committed and due is not None:
            due = max(due, self.clock.now() + COMMIT_RETRY)
        self._push(key, due)

    def _push(self, key: Key, due: datetime | None) -> None:
        gen = self._generation.get(key, 0) + 1
        self._generation[key] = gen
        if due is not None:
            heapq.heappush(self._heap, (due, next(self._seq), key, gen))
            # The new earliest: a sleeping loop must know. A loop that is not asleep
            # reads the heap again before it sleeps.
            if self._sleeping and self._heap[0][2] == key:
                self.wake()

    def _is_running(self, key: Key, default: InstigatorStatus) -> bool:
        return _effective(self._states.get(key), default) is InstigatorStatus.RUNNING

    def _last_tick(self, key: Key) -> datetime:
        """Where a schedule's next ticks start: its last committed tick, or when it was
        first seen (a new schedule does not catch up), or when an operator started it
        again (the stopped stretch is not caught up)."""
        state = self._states.get(key)
        last = state.last_tick_at if state is not None else None
        restarted = self._restarted_at.get(key)
        if last is None:
            return restarted or self._first_seen.get(key) or self.clock.now()
        return max(last, restarted) if restarted is not None else last

    def _schedule_due(self, sched: Schedule) -> datetime | None:
        key: Key = (InstigatorKind.SCHEDULE, sched.name)
        if not self._is_running(key, sched.default_status):
            return None
        nxt = next_fire_time(sched, self._last_tick(key))
        return nxt + jitter_offset(sched.name, nxt, sched.jitter) if sched.jitter else nxt

    def _sensor_due(self, sensor: Sensor) -> datetime | None:
        key: Key = (InstigatorKind.SENSOR, sensor.name)
        if not self._is_running(key, sensor.default_status):
            return None
        state = self._states.get(key)
        last = state.last_tick_at if state is not None else None
        now = self.clock.now()
        if last is None:
            return now
        return max(now, last + timedelta(seconds=sensor.minimum_interval))

    async def _evaluate(self, key: Key) -> None:
        kind, name = key
        try:
            if kind is InstigatorKind.SCHEDULE:
                await self._evaluate_schedule(name)
            else:
                await self._evaluate_sensor(name)
        finally:
            self._inflight.discard(key)
            self._busy -= 1
            self._check_idle()

    async def _evaluate_schedule(self, name: str) -> None:
        sched = self._defs.schedules.get(name)
        if sched is None:
            return
        key: Key = (InstigatorKind.SCHEDULE, name)
        active: list[Run] = []
        if sched.overlap is not Overlap.ALLOW:
            active = await self.store.active_runs_of(schedule_instigator(name))
        last = self._last_tick(key)
        if sched.fn is None:  # no user code: nothing to bound, nothing to wait for
            commits = await self._evaluator.schedule_ticks(
                sched, last_tick_at=last, active_runs=active
            )
        else:
            async with self._eval_limiter:
                commits = await self._evaluator.schedule_ticks(
                    sched, last_tick_at=last, active_runs=active
                )
        # The evaluation slot is free again: a commit waits for the store, not for a slot.
        ok = await self._commit(key, commits) if commits else True
        if ok and sched.overlap is Overlap.CANCEL_PREVIOUS and any(c.runs for c in commits):
            await self._cancel_previous(sched, active)
        if self._defs.schedules.get(name) is sched:
            self._reschedule(key, self._schedule_due(sched), committed=ok)

    async def _evaluate_plain(self, schedules: list[Schedule]) -> None:
        """Schedules without a function and without an overlap policy run no user code and
        read nothing: the loop evaluates them itself (or takes what `_prepare` decided for
        them ahead), in chunks (each schedule's ticks stay one transaction), and
        `_plain_committed` hears how each commit went.

        A chunk closes after PLAIN_CHUNK evaluations made now (decisions made ahead cost
        next to nothing and join the chunk): it goes to the committer, and the loop yields,
        so the store commits it while the next is built. The only chunk, with the committer
        idle, the loop commits itself (no hand-over).
        """
        committer = self._committer
        assert committer is not None, "the scheduler is not running"
        evaluator, prepared = self._evaluator, self._prepared
        chunk: list[Pending] = []
        handed = False
        evaluated = 0  # since the last hand-over
        done = 0
        now = self.clock.now()  # a chunk is decided at once
        try:
            for sched in schedules:
                if evaluated == PLAIN_CHUNK:
                    self._hand_over(chunk)
                    chunk, handed, evaluated = [], True, 0
                    await anyio.lowlevel.checkpoint()
                    now = self.clock.now()
                key: Key = (_SCHEDULE, sched.name)
                last = self._last_tick(key)
                ready = prepared.pop(sched.name, None) if prepared else None
                if (
                    ready is not None
                    and ready.schedule is sched
                    and ready.last == last
                    and now < ready.until
                ):
                    pending = ready.pending
                    commits = pending.commits
                    stamp(commits, now)
                else:
                    commits = evaluator.plain_schedule_ticks(sched, last_tick_at=last, now=now)
                    evaluated += 1
                    pending = self._plain_pending(key, sched, commits)
                done += 1
                if commits:
                    chunk.append(pending)
                else:  # nothing due after all (the heap ran early): just reschedule
                    pending.result = []
                    self._plain_committed(pending)
            if chunk and not handed and committer.idle:
                chunk, last_chunk = [], chunk
                await committer.commit(last_chunk)
            elif chunk:
                self._hand_over(chunk)
                chunk = []
        finally:
            # Not handed over (an evaluation raised, or the loop was cancelled).
            for key in [p.key for p in chunk] + [(_SCHEDULE, s.name) for s in schedules[done:]]:
                self._inflight.discard(key)
                self._busy -= 1
            self._check_idle()

    def _hand_over(self, chunk: list[Pending]) -> None:
        assert self._committer is not None, "the scheduler is not running"
        self._committer.hand_over(chunk)

    def _worth_preparing(self, boundary: datetime) -> bool:
        """Whether enough instigators are due at `boundary` for deciding ahead to pay for
        the extra wake-up."""
        due = 0
        for entry in self._heap:
            if entry[0] == boundary:
                due += 1
                if due >= PREPARE_COUNT:
                    return True
        return False

    async def _prepare(self, boundary: datetime) -> None:
        """Decide now the ticks of the plain schedules due at `boundary`, in chunks,
        stopping if the boundary comes first or the loop moved on; `_evaluate_plain` takes
        those still good when it comes."""
        try:
            prepared: dict[str, _Prepared] = {}
            self._prepared = prepared
            moved = self._lasts_moved
            due = [(key, gen) for at, _, key, gen in self._heap if at == boundary]
            evaluator, schedules = self._preparer, self._defs.schedules
            gens: dict[Key, int] = {}
            for i, (key, gen) in enumerate(due):
                if i and not i % PLAIN_CHUNK:
                    await anyio.lowlevel.checkpoint()
                    if self._prepared is not prepared or self.clock.now() >= boundary:
                        return
                sched = schedules.get(key[1]) if key[0] is _SCHEDULE else None
                if (
                    sched is None
                    or not is_plain(sched)
                    or sched.jitter
                    or self._generation.get(key) != gen
                ):
                    continue
                last = self._last_tick(key)
                commits = evaluator.plain_schedule_ticks(sched, last_tick_at=last, now=boundary)
                if commits:
                    until = next_fire_time(sched, boundary)
                    pending = self._plain_pending(key, sched, commits)
                    prepared[sched.name] = _Prepared(sched, last, until, pending)
                    gens[key] = gen
            if prepared:  # and the commit too, as far as the store can make it ahead
                pendings = [p.pending for p in prepared.values()]
                made = await self.store.prepare_ticks([c for p in pendings for c in p.commits])
                if (
                    self._prepared is prepared
                    and self._lasts_moved == moved
                    and self.clock.now() < boundary
                ):
                    until = min(p.until for p in prepared.values())
                    self._boundary = _Boundary(boundary, until, gens, pendings, made)
        finally:
            self._busy -= 1
            self._check_idle()

    def _plain_pending(self, key: Key, sched: Schedule, commits: list[TickCommit]) -> Pending:
        """A plain schedule's ticks for the committer, which calls `_plain_committed`."""
        return Pending(key=key, commits=commits, on_done=self._plain_committed, schedule=sched)

    def _plain_committed(self, pending: Pending) -> None:
        key, sched = pending.key, pending.schedule
        assert sched is not None
        ok = pending.error is None
        if ok:
            self._remember(key, pending.commits)
        self._inflight.discard(key)
        self._busy -= 1
        if self._defs.schedules.get(sched.name) is sched:
            self._reschedule(key, self._schedule_due(sched), ok)

    async def _cancel_previous(self, sched: Schedule, active: list[Run]) -> None:
        """overlap='cancel_previous': a queued run is canceled outright; a running one is
        marked CANCELING, and the executor that runs it kills it."""
        reason = f"canceled by a newer tick of schedule {sched.name!r} (overlap='cancel_previous')"
        now = self.clock.now()
        for run in active:
            target = RunStatus.CANCELED if run.status is RunStatus.QUEUED else RunStatus.CANCELING
            try:
                await self.store.transition_run(run.run_id, target, now=now, error=reason)
            except TickdError as exc:  # it finished meanwhile
                log.info("run.cancel_skipped", run_id=run.run_id, reason=str(exc))

    async def _evaluate_sensor(self, name: str) -> None:
        sensor = self._defs.sensors.get(name)
        if sensor is None:
            return
        key: Key = (InstigatorKind.SENSOR, name)
        abandoned = self._abandoned.get(name)
        if abandoned is not None and not abandoned.done.is_set():
            # Its last call timed out and still runs in a thread: do not pile on.
            self._push(key, self.clock.now() + timedelta(seconds=sensor.minimum_interval))
            return
        self._abandoned.pop(name, None)
        state = self._states.get(key)
        async with self._eval_limiter:
            commit = await self._evaluator.sensor_tick(
                sensor,
                cursor=state.cursor if state else None,
                last_run_key=state.last_run_key if state else None,
                last_tick_at=state.last_tick_at if state else None,
            )
        ok = await self._commit(key, [commit])
        if self._defs.sensors.get(name) is sensor:
            self._reschedule(key, self._sensor_due(sensor), committed=ok)

    # ---- committing --------------------------------------------------------------------

    async def _commit(self, key: Key, commits: list[TickCommit]) -> bool:
        return (await self._commit_many([(key, commits)]))[key]

    async def _commit_many(self, items: list[tuple[Key, list[TickCommit]]]) -> dict[Key, bool]:
        """Hand ticks to the committer (they join whatever batch it takes next) and wait
        for the outcome; True per key when its ticks are stored."""
        assert self._committer is not None, "the scheduler is not running"
        pendings = [Pending(key=key, commits=commits, done=anyio.Event()) for key, commits in items]
        self._busy += 1
        try:
            self._committer.hand_over(pendings)
            for pending in pendings:
                assert pending.done is not None
                await pending.done.wait()
        finally:
            self._busy -= 1
        outcomes: dict[Key, bool] = {}
        for pending in pendings:
            if pending.error is not None:
                if isinstance(pending.error, LeaseLostError):
                    raise pending.error
                outcomes[pending.key] = False
                continue
            assert pending.result is not None
            self._remember(pending.key, pending.commits)
            outcomes[pending.key] = True
        return outcomes

    def _remember(self, key: Key, commits: list[TickCommit]) -> None:
        state = self._states.get(key) or InstigatorState(
            instigator=Instigator(kind=key[0], name=key[1])
        )
        cursor, last_tick_at, last_run_key = state.cursor, state.last_tick_at, state.last_run_key
        for commit in commits:
            u = commit.state
            if u.set_cursor or u.cursor is not None:
                cursor = u.cursor
            last_tick_at = u.last_tick_at or last_tick_at
            last_run_key = u.last_run_key or last_run_key
        self._states[key] = InstigatorState(
            instigator=state.instigator,
            status=state.status,
            cursor=cursor,
            last_tick_at=last_tick_at,
            last_run_key=last_run_key,
            updated_at=state.updated_at,
        )

    # ---- helpers -------------------------------------------------------------------------

    def _make_evaluator(self, ids: IdGenerator | None = None) -> Evaluator:
        return Evaluator(
            jobs=self._defs.jobs,
            ids=ids or self._ids,
            now=self.clock.now,
            thread_limiter=self._thread_limiter,
            on_abandon=self._on_abandon,
            keyed=True,
        )

    def _on_abandon(self, name: str, call: SyncCall) -> None:
        self._abandoned[name] = call
        log.warning("sensor.abandoned", instigator=name, reason="timed out in its thread")

    def _is_idle(self) -> bool:
        deadline = self._sleep_deadline
        return (
            self._sleeping and self._busy == 0 and (deadline is None or deadline > self.clock.now())
        )

    def _work(self, delta: int) -> None:
        """`delta` more (or fewer) pieces of work under way; idle at none."""
        self._busy += delta
        self._check_idle()

    def _check_idle(self) -> None:
        if self._is_idle():
            self._idle.set()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) over a fan-out: its tens of
    thousands of ticks and runs all live until their commit and form no cycles, and the
    collector would scan them again and again (a fifth of a 10,000-schedule boundary).
    What they leave is freed by reference counting as usual."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _effective(state: InstigatorState | None, default: InstigatorStatus) -> InstigatorStatus:
    """An operator's start/stop if there was one, else the definition's default."""
    if state is None or state.status is None:
        return default
    return state.status
