"""The Store in plain dicts, for fast tests and `tickd simulate`: the SQLite store's
semantics (same dedup keys, same ordering, values read back the same way), no file.

Dedup uses dict indexes standing in for SQLite's unique indexes: `_by_run_key` never
forgets a key, `_active_partition` holds a partition while its run is active. Writes
happen under a lock; commit_ticks and create_runs keep an undo journal so a failure
part way (see `fault`) leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel

from daemon.adapters.store_codec import (
    Batch,
    check_unique_ids,
    decision,
    json_copy,
    nearest,
    opt_utc,
    take_lease,
    utc,
)
from daemon.domain.limits import ConcurrencyLimits, LimitCounter
from daemon.domain.requests import PartitionDedup, RunKeyDedup, partition_dedup, run_key_dedup
from daemon.domain.runs import (
    IN_FLIGHT_STATUSES,
    Instigator,
    InstigatorKind,
    Run,
    RunStatus,
)
from daemon.domain.ticks import (
    Decision,
    InstigatorState,
    InstigatorStatus,
    KeyedRequests,
    Outcome,
    Tick,
    TickCommit,
    TickStatus,
    stamp,
)
from daemon.errors import (
    DuplicateIdError,
    IllegalTransitionError,
    LeaseLostError,
    RunNotFoundError,
    StoreClosedError,
    TickdError,
)
from daemon.ports import (
    CreateResult,
    Lease,
    LogLine,
    MoveAndClaim,
    PreparedTicks,
    PurgeCounts,
    Retention,
    RunEvent,
    RunMove,
    RunQuery,
    TickQuery,
)
from daemon.slotted import replacer

_MISSING: Any = object()
StateKey = tuple[InstigatorKind, str]


class _Journal:
    """Undo records for one write: restore every dict entry it set, newest first."""

    def __init__(self) -> None:
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []

    def set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((mapping, key, mapping.get(key, _MISSING)))
        mapping[key] = value

    def rollback(self) -> None:
        for mapping, key, old in reversed(self._undo):
            if old is _MISSING:
                del mapping[key]
            else:
                mapping[key] = old


def _queue_key(run: Run) -> tuple[int, datetime, str]:
    return (-run.priority, run.created_at, run.run_id)


class MemoryStore:
    """The Store protocol in memory; nothing outlives the object. Claims and listings scan
    every run (fine for tests and simulations, not for a production queue)."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()
        self._closed = False
        self._runs: dict[str, Run] = {}
        self._by_run_key: dict[RunKeyDedup, str] = {}
        self._active_partition: dict[PartitionDedup, str] = {}
        self._ticks: dict[str, Tick] = {}
        self._states: dict[StateKey, InstigatorState] = {}
        self._lease: Lease | None = None
        self._events: dict[str, list[RunEvent]] = {}
        self._logs: dict[str, list[LogLine]] = {}
        self._seq = 0  # sequence numbers of events and log lines (only their order counts)
        self._changes = 0
        #: For tests: called with a point name ("commit_ticks.after_runs",
        #: "commit_ticks.after_tick", "commit_ticks.after_state") inside commit_ticks;
        #: raising there must leave nothing of the call behind.
        self.fault: Callable[[str], None] | None = None

    async def close(self) -> None:
        self._closed = True

    async def _enter(self) -> None:
        """Behave like I/O: a checkpoint (cancellation, fairness), then refuse if closed."""
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise StoreClosedError("memory://")

    def _fault(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    @contextmanager
    def _atomic(self) -> Iterator[_Journal]:
        """A write that either completes or, if it raises, is undone entirely."""
        journal, seq, changes = _Journal(), self._seq, self._changes
        try:
            yield journal
        except BaseException:
            journal.rollback()
            self._seq, self._changes = seq, changes
            raise

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ---- runs --------------------------------------------------------------------------

    async def create_runs(self, runs: Sequence[Run]) -> CreateResult:
        batch = Batch.of(runs)
        async with self._lock:
            await self._enter()
            with self._atomic() as journal:
                resolved = self._insert_runs(batch.kept, journal)
        created, deduplicated = batch.report(resolved)
        return CreateResult(created=tuple(created), deduplicated=tuple(deduplicated))

    async def commit_ticks(
        self, commits: Sequence[TickCommit], *, lease_epoch: int | None = None
    ) -> list[Tick]:
        """Unlike the other calls, no checkpoint when no other write is under way: it is
        the hot path of fake-clock tests (a week of minutely ticks is 10,080 commits), and
        a pass of the event loop per commit was an eighth of their time. Nothing below
        awaits then: no other write can come in between, as if locked."""
        batches = [Batch.of(commit.runs) for commit in commits]
        if self._closed:
            raise StoreClosedError("memory://")
        if self._lock.locked():  # another write is part way: wait for it
            async with self._lock:
                await self._enter()
                return self._commit_ticks(commits, batches, lease_epoch)
        return self._commit_ticks(commits, batches, lease_epoch)

    async def prepare_ticks(self, commits: Sequence[TickCommit]) -> PreparedTicks:
        """Nothing to make ahead: rows are objects here."""
        return PreparedTicks(commits=tuple(commits))

    async def commit_prepared(
        self, prepared: PreparedTicks, *, at: datetime, lease_epoch: int | None = None
    ) -> list[Tick]:
        stamp(prepared.commits, at)
        return await self.commit_ticks(prepared.commits, lease_epoch=lease_epoch)

    def _commit_ticks(
        self, commits: Sequence[TickCommit], batches: list[Batch], lease_epoch: int | None
    ) -> list[Tick]:
        if lease_epoch is not None and (self._lease is None or self._lease.epoch != lease_epoch):
            raise LeaseLostError(lease_epoch)
        journal, seq, changes = _Journal(), self._seq, self._changes  # as _atomic, inline
        try:
            batches = [
                b if c.keyed is None else self._keyed_batch(c.tick.instigator, c.keyed)
                for c, b in zip(commits, batches, strict=True)
            ]
            resolved = self._insert_runs([r for b in batches for r in b.kept], journal)
            self._fault("commit_ticks.after_runs")
            # A tick given in UTC is stored as given; it is frozen, so the caller gets the
            # same object back.
            given = [
                _tick_with_decisions(c.tick, b.decisions(resolved))
                for c, b in zip(commits, batches, strict=True)
            ]
            stored_ticks = self._ticks
            for tick in given:
                stored = _stored_tick(tick)
                if stored.tick_id in stored_ticks:
                    raise DuplicateIdError("tick", stored.tick_id)
                journal.set(stored_ticks, stored.tick_id, stored)
            self._fault("commit_ticks.after_tick")
            for commit in commits:
                self._update_state(commit, journal)
            self._fault("commit_ticks.after_state")
        except BaseException:
            journal.rollback()
            self._seq, self._changes = seq, changes
            raise
        return given

    def _keyed_batch(self, instigator: Instigator, keyed: KeyedRequests) -> Batch:
        """Runs built for the `keyed` requests whose run_key no stored run holds."""
        kind, name, by_run_key = instigator.kind, instigator.name, self._by_run_key
        held = [
            (i, by_run_key[(kind, name, key)])
            for i, key in enumerate(keyed.run_keys)
            if (kind, name, key) in by_run_key
        ]
        return Batch.of_keyed(keyed, held)

    def _insert_runs(self, kept: Sequence[Run], journal: _Journal) -> dict[str, Decision]:
        check_unique_ids(kept)
        resolved: dict[str, Decision] = {}
        by_run_key, active_partition, runs = self._by_run_key, self._active_partition, self._runs
        created = Outcome.CREATED
        for run in kept:
            rk, pk = run_key_dedup(run), partition_dedup(run)
            if rk is not None and rk in by_run_key:
                blocker = by_run_key[rk]
                resolved[run.run_id] = decision(run, Outcome.DEDUPLICATED_RUN_KEY, blocker)
            elif pk is not None and pk in active_partition:
                blocker = active_partition[pk]
                resolved[run.run_id] = decision(run, Outcome.DEDUPLICATED_PARTITION, blocker)
            elif run.run_id in runs:
                raise DuplicateIdError("run", run.run_id)
            else:
                stored = _stored_run(run)
                journal.set(runs, run.run_id, stored)
                if rk is not None:
                    journal.set(by_run_key, rk, run.run_id)
                if pk is not None:
                    journal.set(active_partition, pk, run.run_id)
                event = RunEvent(
                    run_id=run.run_id,
                    seq=self._next_seq(),
                    at=stored.created_at,
                    kind="run.enqueued",
                    data={"instigator": str(run.instigator), "tick_id": run.tick_id},
                )
                journal.set(self._events, run.run_id, [event])
                resolved[run.run_id] = decision(run, created, run.run_id)
                self._changes += 1
        return resolved

    def _update_state(self, commit: TickCommit, journal: _Journal) -> None:
        tick, update = commit.tick, commit.state
        key = (tick.instigator.kind, tick.instigator.name)
        state = self._states.get(key)
        write_cursor = update.set_cursor or update.cursor is not None
        journal.set(
            self._states,
            key,
            InstigatorState(
                instigator=tick.instigator if state is None else state.instigator,
                status=None if state is None else state.status,
                cursor=update.cursor if write_cursor or state is None else state.cursor,
                last_tick_at=_utc(update.last_tick_at)
                if update.last_tick_at is not None or state is None
                else state.last_tick_at,
                last_run_key=update.last_run_key
                if update.last_run_key is not None or state is None
                else state.last_run_key,
                updated_at=_utc(tick.ended_at or tick.started_at),
            ),
        )

    async def claim_runs(
        self,
        *,
        node_id: str,
        limit: int,
        limits: ConcurrencyLimits,
        now: datetime,
    ) -> list[Run]:
        async with self._lock:
            await self._enter()
            return self._claim(node_id, limit, limits, now)

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
        async with self._lock:
            await self._enter()
            moved = self._moves(moves)
            claimed = self._claim(node_id, limit, limits, now)
            if start is not None:
                for i, run in enumerate(claimed):
                    move = start(run)
                    if move is not None:
                        with suppress(IllegalTransitionError, RunNotFoundError):
                            claimed[i] = self._move(move)
        return MoveAndClaim(moved=tuple(moved), claimed=tuple(claimed))

    def _claim(
        self, node_id: str, limit: int, limits: ConcurrencyLimits, now: datetime
    ) -> list[Run]:
        if limit <= 0:
            return []
        counter = LimitCounter(
            limits, (r.tags for r in self._runs.values() if r.status in IN_FLIGHT_STATUSES)
        )
        due = sorted(
            (
                r
                for r in self._runs.values()
                if r.status is RunStatus.QUEUED and (r.not_before is None or r.not_before <= now)
            ),
            key=_queue_key,
        )
        claimed: list[Run] = []
        for run in due:
            if len(claimed) >= limit or counter.full():
                break
            if counter.admit(run.tags):
                moved = dataclasses.replace(run, status=RunStatus.STARTING, node_id=node_id)
                self._runs[run.run_id] = moved
                self._add_event(run.run_id, "run.starting", now, {"node_id": node_id})
                claimed.append(moved)
        if claimed:
            self._changes += 1
        return claimed

    async def transition_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        now: datetime,
        error: str | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> Run:
        async with self._lock:
            await self._enter()
            return self._move(
                RunMove(run_id=run_id, status=status, now=now, error=error, event=event)
            )

    async def transition_runs(self, moves: Sequence[RunMove]) -> list[Run | TickdError]:
        async with self._lock:
            await self._enter()
            return self._moves(moves)

    def _moves(self, moves: Sequence[RunMove]) -> list[Run | TickdError]:
        results: list[Run | TickdError] = []
        for move in moves:
            try:
                results.append(self._move(move))
            except (IllegalTransitionError, RunNotFoundError) as exc:
                results.append(exc)
        return results

    def _move(self, move: RunMove) -> Run:
        run_id, status, now = move.run_id, move.status, move.now
        data = json_copy(move.event or {})
        current = self._runs.get(run_id)
        if current is None:
            raise RunNotFoundError(run_id)
        moved = current.moved_to(status, now=now, error=move.error)
        moved = dataclasses.replace(
            moved, started_at=opt_utc(moved.started_at), ended_at=opt_utc(moved.ended_at)
        )
        self._runs[run_id] = moved
        pk = partition_dedup(moved)
        if not status.is_active and pk is not None and self._active_partition.get(pk) == run_id:
            del self._active_partition[pk]
        self._add_event(run_id, f"run.{status.value.lower()}", now, data)
        self._changes += 1
        return moved

    def _add_event(self, run_id: str, kind: str, at: datetime, data: Mapping[str, Any]) -> None:
        event = RunEvent(run_id=run_id, seq=self._next_seq(), at=utc(at), kind=kind, data=data)
        self._events.setdefault(run_id, []).append(event)

    async def get_run(self, run_id: str) -> Run | None:
        await self._enter()
        return self._runs.get(run_id)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        await self._enter()

        def matches(r: Run) -> bool:
            return (
                (not query.statuses or r.status in query.statuses)
                and (query.job is None or r.job == query.job)
                and (query.instigator is None or r.instigator == query.instigator)
                and all(r.tags.get(k) == v for k, v in query.tags.items())
                and (query.partition_key is None or r.partition_key == query.partition_key)
                and (query.since is None or r.created_at >= query.since)
            )

        found = sorted(
            filter(matches, self._runs.values()),
            key=lambda r: (r.created_at, r.run_id),
            reverse=True,
        )
        return found if query.limit is None else found[: query.limit]

    async def active_runs_of(self, instigator: Instigator) -> list[Run]:
        await self._enter()
        return sorted(
            (r for r in self._runs.values() if r.instigator == instigator and r.status.is_active),
            key=lambda r: (r.created_at, r.run_id),
        )

    async def orphaned_runs(self, *, live_nodes: Sequence[str]) -> list[Run]:
        await self._enter()
        live = set(live_nodes)
        return sorted(
            (
                r
                for r in self._runs.values()
                if r.status in IN_FLIGHT_STATUSES and r.node_id not in live
            ),
            key=lambda r: (r.created_at, r.run_id),
        )

    async def next_due_at(self) -> datetime | None:
        await self._enter()
        due = [
            r.not_before
            for r in self._runs.values()
            if r.status is RunStatus.QUEUED and r.not_before is not None
        ]
        return min(due, default=None)

    # ---- ticks and instigators -------------------------------------------------------------

    async def list_ticks(self, query: TickQuery) -> list[Tick]:
        await self._enter()
        found = [
            t
            for t in self._ticks.values()
            if (query.instigator_name is None or t.instigator.name == query.instigator_name)
            and (not query.statuses or t.status in query.statuses)
            and (query.since is None or t.tick_at >= query.since)
        ]
        if query.around is not None:
            return nearest(found, query.around, query.limit)
        found.sort(key=lambda t: (t.tick_at, t.tick_id), reverse=True)
        return found if query.limit is None else found[: query.limit]

    async def get_tick(self, tick_id: str) -> Tick | None:
        await self._enter()
        return self._ticks.get(tick_id)

    async def instigator_states(self) -> Mapping[tuple[InstigatorKind, str], InstigatorState]:
        await self._enter()
        return dict(self._states)

    async def set_instigator_status(
        self, instigator: Instigator, status: InstigatorStatus, *, now: datetime
    ) -> InstigatorState:
        return await self._set_state(instigator, now, status=status)

    async def set_cursor(
        self, instigator: Instigator, cursor: str | None, *, now: datetime
    ) -> InstigatorState:
        return await self._set_state(instigator, now, cursor=cursor)

    async def ensure_instigators(self, instigators: Sequence[Instigator], *, now: datetime) -> None:
        async with self._lock:
            await self._enter()
            for instigator in instigators:
                key = (instigator.kind, instigator.name)
                if key not in self._states:
                    self._states[key] = InstigatorState(
                        instigator=instigator, last_tick_at=utc(now), updated_at=utc(now)
                    )

    async def _set_state(
        self, instigator: Instigator, now: datetime, **change: Any
    ) -> InstigatorState:
        async with self._lock:
            await self._enter()
            key = (instigator.kind, instigator.name)
            state = self._states.get(key) or InstigatorState(instigator=instigator)
            state = dataclasses.replace(state, **change, updated_at=utc(now))
            self._states[key] = state
            return state

    # ---- housekeeping -----------------------------------------------------------------------

    async def purge(self, *, now: datetime, retention: Retention) -> PurgeCounts:
        async with self._lock:
            await self._enter()

            def expired(tick: Tick) -> bool:
                keep = (
                    retention.skipped_ticks
                    if tick.status is TickStatus.SKIPPED
                    else retention.ticks
                )
                return keep is not None and tick.tick_at < now - keep

            old_ticks = [t.tick_id for t in self._ticks.values() if expired(t)]
            for tick_id in old_ticks:
                del self._ticks[tick_id]
            old_runs: list[str] = []
            if retention.runs is not None:
                cutoff = now - retention.runs
                old_runs = [
                    r.run_id
                    for r in self._runs.values()
                    if r.status.is_terminal and r.ended_at is not None and r.ended_at < cutoff
                ]
            for run_id in old_runs:
                run = self._runs.pop(run_id)
                rk = run_key_dedup(run)
                if rk is not None and self._by_run_key.get(rk) == run_id:
                    del self._by_run_key[rk]
                self._events.pop(run_id, None)
                self._logs.pop(run_id, None)
            if old_runs:
                self._changes += 1
            return PurgeCounts(ticks=len(old_ticks), runs=len(old_runs))

    async def change_token(self) -> int:
        await self._enter()
        return self._changes

    async def wait_for_change(self, token: int, *, max_wait: float) -> int:
        # Only this process can change a memory store, and its writers wake the
        # dispatcher directly; a short nap is enough here.
        with anyio.move_on_after(max_wait):
            while self._changes == token:  # noqa: ASYNC110 - in-process writers only
                await anyio.sleep(0.01)
        return await self.change_token()

    # ---- lease -----------------------------------------------------------------------------

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
        async with self._lock:
            await self._enter()
            self._lease = take_lease(
                self._lease,
                holder=holder,
                pid=pid,
                host=host,
                now=now,
                ttl=ttl,
                dead_holder=dead_holder,
            )
            return self._lease

    async def renew_lease(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        async with self._lock:
            await self._enter()
            current = self._lease
            if current is None or (current.holder, current.epoch) != (lease.holder, lease.epoch):
                raise LeaseLostError(lease.epoch)
            self._lease = dataclasses.replace(
                current, heartbeat_at=utc(now), expires_at=utc(now + ttl)
            )
            return self._lease

    async def release_lease(self, lease: Lease) -> None:
        """Marks the lease lapsed (expires_at = since) but keeps it, and its epoch."""
        async with self._lock:
            await self._enter()
            current = self._lease
            if current is not None and (current.holder, current.epoch) == (
                lease.holder,
                lease.epoch,
            ):
                self._lease = dataclasses.replace(current, expires_at=current.since)

    async def current_lease(self) -> Lease | None:
        await self._enter()
        return self._lease

    # ---- run events and logs -----------------------------------------------------------------

    async def add_run_event(
        self, run_id: str, kind: str, *, at: datetime, data: Mapping[str, Any] | None = None
    ) -> None:
        copied = json_copy(data or {})
        async with self._lock:
            await self._enter()
            if run_id not in self._runs:
                raise RunNotFoundError(run_id)
            self._add_event(run_id, kind, at, copied)

    async def run_events(self, run_id: str) -> list[RunEvent]:
        await self._enter()
        return list(self._events.get(run_id, ()))

    async def append_logs(self, run_id: str, lines: Sequence[tuple[datetime, str, str]]) -> None:
        async with self._lock:
            await self._enter()
            if not lines:
                return
            if run_id not in self._runs:
                raise RunNotFoundError(run_id)
            log = self._logs.setdefault(run_id, [])
            for at, stream, text in lines:
                log.append(
                    LogLine(
                        run_id=run_id, seq=self._next_seq(), at=utc(at), stream=stream, text=text
                    )
                )

    async def read_logs(self, run_id: str, *, after_seq: int = 0) -> list[LogLine]:
        await self._enter()
        return [line for line in self._logs.get(run_id, ()) if line.seq > after_seq]


def _utc(dt: datetime | None) -> datetime | None:
    """`opt_utc`, without the round trip through text for a time already in UTC."""
    return dt if dt is None or dt.tzinfo is UTC else utc(dt)


_tick_with_decisions = replacer(Tick, "decisions")
_run_with_copies = replacer(Run, "tags", "run_config")


def _stored_run(run: Run) -> Run:
    """`run` as a store reads it back: UTC times, tags and config through JSON."""
    if (
        run.created_at.tzinfo is UTC
        and run.started_at is None
        and run.ended_at is None
        and run.not_before is None
    ):  # a new run, in UTC: only the mappings to copy
        return _run_with_copies(run, _json_copy(run.tags), _json_copy(run.run_config))
    return dataclasses.replace(
        run,
        created_at=utc(run.created_at) if run.created_at.tzinfo is not UTC else run.created_at,
        started_at=_utc(run.started_at),
        ended_at=_utc(run.ended_at),
        not_before=_utc(run.not_before),
        tags=_json_copy(run.tags),
        run_config=_json_copy(run.run_config),
    )


def _json_copy(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`json_copy`, without the round trip through text for flat text (tags)."""
    if not mapping:
        return {}
    if all(type(k) is str and type(v) is str for k, v in mapping.items()):
        return dict(mapping)
    return json_copy(mapping)


def _stored_tick(tick: Tick) -> Tick:
    if (
        tick.started_at.tzinfo is UTC
        and (tick.ended_at is None or tick.ended_at.tzinfo is UTC)
        and (tick.scheduled_for is None or tick.scheduled_for.tzinfo is UTC)
    ):
        return tick
    return dataclasses.replace(
        tick,
        started_at=utc(tick.started_at),
        ended_at=opt_utc(tick.ended_at),
        scheduled_for=opt_utc(tick.scheduled_for),
    )
