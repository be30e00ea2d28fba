"""The SQLite store: one file, WAL, one connection; exactly-once lives in its unique indexes.

Every write is one `BEGIN IMMEDIATE` … `COMMIT` on the single aiosqlite connection, run
whole as a single call on aiosqlite's thread in plain `sqlite3` calls (sqlite_dispatch's
`run_transaction`): one hop between the event loop and that thread per write, not one
per statement. Writes and reads are serialized by a lock (reads take it too, so they
never see a write half done). Other processes on the same file are kept out by SQLite's
write lock: `busy_timeout` waits for it, and BEGIN is retried a few times more before
StoreBusyError.

Batches travel as one JSON parameter read with `json_each`, so a tick of 10,000 requests
costs a handful of statements, not 10,000.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import aiosqlite
import anyio

from daemon.adapters import sqlite_dispatch as dispatch_sql
from daemon.adapters import sqlite_ticks as ticks_sql
from daemon.adapters.doorbell import Doorbell, bell_path, ring
from daemon.adapters.sqlite_checkpoint import Checkpointer
from daemon.adapters.sqlite_dispatch import SyncTx
from daemon.adapters.sqlite_file import (
    BEGIN_ATTEMPTS,
    BUSY_TIMEOUT_MS,
    connect,
    scalar,
    store_error,
)
from daemon.adapters.store_codec import (
    LEASE_COLUMNS,
    RUN_COLUMNS,
    SQL_ACTIVE,
    SQL_IN_FLIGHT,
    SQL_TERMINAL,
    STATE_COLUMNS,
    TICK_COLUMNS,
    Batch,
    dec_time,
    dumps,
    enc_time,
    lease_from_row,
    nearest,
    run_from_row,
    state_from_row,
    take_lease,
    tick_from_row,
    utc,
)
from daemon.domain.limits import ConcurrencyLimits
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import (
    InstigatorState,
    InstigatorStatus,
    Tick,
    TickCommit,
    stamp,
)
from daemon.errors import (
    LeaseLostError,
    RunNotFoundError,
    StoreBusyError,
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

T = TypeVar("T")


# ---- the store -------------------------------------------------------------------------------


_States = Mapping[tuple[InstigatorKind, str], InstigatorState]

# Without a doorbell (a store path too long for a Unix socket) the change counter is
# read this often instead.
NO_BELL_POLL_S = 1.0

# Tick commits prepared ahead (`prepare_ticks`) from this many on are made on a worker
# thread, so that the event loop goes on meanwhile.
PREPARE_IN_THREAD = 256
SMALL_COMMITS = 64  # of commits that changed no run: one in this many wakes the checkpointer


class _Abandoned(Exception):
    """A transaction whose caller was cancelled before it began: rolled back unwritten."""


class SqliteStore:
    """The Store on one SQLite file. Open it with `await SqliteStore.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection, location: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._location = location
        self._lock = anyio.Lock(fast_acquire=True)  # no yield when free: one hop per call
        self._run_commits = 0  # our own commits that changed runs (data_version misses them)
        # instigator_states() is read every heartbeat: kept while no commit (ours, counted
        # in _state_writes, or another connection's, seen in data_version) can have changed it.
        self._state_writes = 0
        self._states: tuple[int, int, _States] | None = None
        self._bell_path = bell_path(Path(location))
        self._bell: Doorbell | None = None
        self._listening = False
        self._last_token: int | None = None  # what wait_for_change returned last
        self._checkpointer = Checkpointer(location)
        self._small_commits = 0
        #: For tests: called with a point name ("commit_ticks.after_runs",
        #: "commit_ticks.after_tick", "commit_ticks.after_state") inside commit_ticks'
        #: transaction; raising there must leave nothing of the call behind.
        self.fault: Callable[[str], None] | None = None

    @property
    def location(self) -> str:
        return self._location

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        """Open (creating and migrating if needed) the store at `path`.

        Raises StoreLocationError, NotATickdStoreError or StoreTooNewError without changing
        the file when it cannot be used."""
        return cls(await connect(path), str(path))

    async def close(self) -> None:
        if self._bell is not None:
            self._bell.close()
        await anyio.to_thread.run_sync(self._checkpointer.close)
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    # ---- transactions ------------------------------------------------------------------

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreClosedError(self._location)
        return self._conn

    def _committed(self, runs_changed: bool) -> None:
        # Commits that changed runs wrote pages worth copying back; the small ones between
        # (the heartbeat's lease, a state) are left for every SMALL_COMMITS-th.
        self._small_commits += 1
        if runs_changed or self._small_commits >= SMALL_COMMITS:
            self._small_commits = 0
            self._checkpointer.poke()
        if runs_changed:
            self._run_commits += 1
            if self._bell is None:  # the daemon listens; everyone else rings
                ring(self._bell_path)

    async def _on_thread(self, body: Callable[[SyncTx], T], *, abandonable: bool = False) -> T:
        """One write transaction, committed if `body` returns and rolled back if it raises,
        as one call on the connection's thread (see sqlite_dispatch). BEGIN waits for
        another process's write lock (busy_timeout), then is tried again with back-off a
        few times before StoreBusyError; SQLite's errors come out as StoreErrors.

        A transaction handed to the thread is not cancelled: its caller's cancellation waits
        for it, so the COMMIT's outcome is never lost (cancelled in the back-off between
        attempts, it wrote nothing). An `abandonable` one whose caller is cancelled while
        it still waits for the write lock writes nothing (its BEGIN is rolled back) instead;
        cancelled once its body began, it still commits, unknown to its caller."""
        delay = 0.02
        abandoned = threading.Event()

        def guarded(tx: SyncTx) -> T:
            if abandoned.is_set():
                raise _Abandoned
            return body(tx)

        async with self._lock:
            conn = self._live()
            for attempt in range(BEGIN_ATTEMPTS):
                try:
                    with anyio.CancelScope(shield=not abandonable):
                        done = await dispatch_sql.run_transaction(conn, self._location, guarded)
                except sqlite3.Error as e:
                    raise store_error(e, self._location) from e
                except anyio.get_cancelled_exc_class():
                    abandoned.set()
                    raise
                if done is not None:
                    tx, result = done
                    self._committed(tx.runs_changed)
                    return result
                if attempt < BEGIN_ATTEMPTS - 1:
                    await anyio.sleep(delay)
                    delay *= 4
        raise StoreBusyError(self._location, BEGIN_ATTEMPTS * BUSY_TIMEOUT_MS / 1000)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                yield self._live()
            except sqlite3.Error as e:
                raise store_error(e, self._location) from e

    def _writing_states(self, body: Callable[[SyncTx], T]) -> Callable[[SyncTx], T]:
        """`body`, counted as a write of instigator states before it writes: inside the
        transaction, under the store's lock, so no read keeps a copy it makes stale (one
        that fails costs the next read a needless reload, nothing worse)."""

        def counted(tx: SyncTx) -> T:
            self._state_writes += 1
            return body(tx)

        return counted

    def _fault(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    # ---- runs --------------------------------------------------------------------------

    async def create_runs(self, runs: Sequence[Run]) -> CreateResult:
        batch = Batch.of(runs)
        resolved = await self._on_thread(
            lambda tx: ticks_sql.insert_runs(tx, batch.kept), abandonable=True
        )
        created, deduplicated = batch.report(resolved)
        return CreateResult(created=tuple(created), deduplicated=tuple(deduplicated))

    async def commit_ticks(
        self, commits: Sequence[TickCommit], *, lease_epoch: int | None = None
    ) -> list[Tick]:
        """One transaction, run as one call on the connection's thread (sqlite_ticks)."""
        batches = [Batch.of(commit.runs) for commit in commits]

        def body(tx: SyncTx) -> list[Tick]:
            return ticks_sql.commit(
                tx, commits, batches, lease_epoch=lease_epoch, fault=self._fault
            )

        return await self._on_thread(self._writing_states(body))

    async def prepare_ticks(self, commits: Sequence[TickCommit]) -> PreparedTicks:
        """The statements made ahead (sqlite_ticks.prepare), on a worker thread when there
        are many: a 10,000-schedule boundary's are ~50 ms of Python."""
        commits = tuple(commits)
        if len(commits) >= PREPARE_IN_THREAD:
            made = await anyio.to_thread.run_sync(ticks_sql.prepare, commits)
        else:
            made = ticks_sql.prepare(commits)
        return PreparedTicks(commits=commits, made=made)

    async def commit_prepared(
        self, prepared: PreparedTicks, *, at: datetime, lease_epoch: int | None = None
    ) -> list[Tick]:
        made, commits = prepared.made, prepared.commits
        if not isinstance(made, ticks_sql.Prepared):  # nothing could be made ahead
            stamp(commits, at)
            return await self.commit_ticks(commits, lease_epoch=lease_epoch)
        body = partial(
            ticks_sql.commit_prepared,
            commits=commits,
            prepared=made,
            at=at,
            lease_epoch=lease_epoch,
            fault=self._fault,
        )
        return await self._on_thread(self._writing_states(body))

    async def claim_runs(
        self,
        *,
        node_id: str,
        limit: int,
        limits: ConcurrencyLimits,
        now: datetime,
    ) -> list[Run]:
        if limit <= 0:
            return []
        return await self._on_thread(
            partial(dispatch_sql.claim, node_id=node_id, limit=limit, limits=limits, now=now)
        )

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
        if not moves and limit <= 0:
            return MoveAndClaim()
        return await self._on_thread(
            partial(
                dispatch_sql.move_and_claim,
                moves=moves,
                node_id=node_id,
                limit=limit,
                limits=limits,
                now=now,
                start=start,
            )
        )

    async def transition_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        now: datetime,
        error: str | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> Run:
        move = RunMove(run_id=run_id, status=status, now=now, error=error, event=event)
        [result] = await self.transition_runs([move])
        if isinstance(result, TickdError):
            raise result
        return result

    async def transition_runs(self, moves: Sequence[RunMove]) -> list[Run | TickdError]:
        if not moves:
            return []
        return await self._on_thread(partial(dispatch_sql.move_runs, moves=moves))

    async def get_run(self, run_id: str) -> Run | None:
        async with self._read() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
                )
            )
        return run_from_row(rows[0]) if rows else None

    async def list_runs(self, query: RunQuery) -> list[Run]:
        where: list[str] = []
        params: list[Any] = []
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            params.extend(s.value for s in query.statuses)
        if query.job is not None:
            where.append("job = ?")
            params.append(query.job)
        if query.instigator is not None:
            where.append("instigator_kind = ? AND instigator_name = ?")
            params += [query.instigator.kind.value, query.instigator.name]
        for key, value in query.tags.items():
            where.append("run_id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            params += [key, value]
        if query.partition_key is not None:
            where.append("partition_key = ?")
            params.append(query.partition_key)
        if query.since is not None:
            where.append("created_at >= ?")
            params.append(enc_time(query.since))
        params.append(-1 if query.limit is None else query.limit)
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where) or 'true'} "
            "ORDER BY created_at DESC, run_id DESC LIMIT ?"
        )
        async with self._read() as conn:
            return [run_from_row(r) for r in await conn.execute_fetchall(sql, params)]

    async def active_runs_of(self, instigator: Instigator) -> list[Run]:
        async with self._read() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE instigator_kind = ? "
                "AND instigator_name = ? AND ended_at IS NULL AND status IN "
                f"{SQL_ACTIVE} ORDER BY created_at, run_id",
                (instigator.kind.value, instigator.name),
            )
        return [run_from_row(r) for r in rows]

    async def orphaned_runs(self, *, live_nodes: Sequence[str]) -> list[Run]:
        async with self._read() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN {SQL_IN_FLIGHT} AND "
                "(node_id IS NULL OR node_id NOT IN (SELECT value FROM json_each(?))) "
                "ORDER BY created_at, run_id",
                (dumps(list(live_nodes)),),
            )
        return [run_from_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        async with self._read() as conn:
            value = await scalar(
                conn,
                "SELECT min(not_before) FROM runs "
                "WHERE status = 'QUEUED' AND not_before IS NOT NULL",
            )
        return None if value is None else dec_time(value)

    # ---- ticks and instigators ---------------------------------------------------------------

    async def list_ticks(self, query: TickQuery) -> list[Tick]:
        where: list[str] = []
        params: list[Any] = []
        if query.instigator_name is not None:
            where.append("instigator_name = ?")
            params.append(query.instigator_name)
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            params.extend(s.value for s in query.statuses)
        if query.since is not None:
            where.append("tick_at >= ?")
            params.append(enc_time(query.since))
        limit = -1 if query.limit is None else query.limit
        base = f"SELECT {TICK_COLUMNS} FROM ticks WHERE {' AND '.join(where) or 'true'}"
        async with self._read() as conn:
            if query.around is None:
                rows = await conn.execute_fetchall(
                    f"{base} ORDER BY tick_at DESC, tick_id DESC LIMIT ?", [*params, limit]
                )
                return [tick_from_row(r) for r in rows]
            # The nearest `limit` are among the nearest `limit` on either side.
            around = enc_time(query.around)
            before = await conn.execute_fetchall(
                f"{base} AND tick_at <= ? ORDER BY tick_at DESC, tick_id LIMIT ?",
                [*params, around, limit],
            )
            after = await conn.execute_fetchall(
                f"{base} AND tick_at > ? ORDER BY tick_at, tick_id LIMIT ?",
                [*params, around, limit],
            )
        ticks = [tick_from_row(r) for r in [*before, *after]]
        return nearest(ticks, query.around, query.limit)

    async def get_tick(self, tick_id: str) -> Tick | None:
        async with self._read() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT {TICK_COLUMNS} FROM ticks WHERE tick_id = ?", (tick_id,)
                )
            )
        return tick_from_row(rows[0]) if rows else None

    async def instigator_states(self) -> _States:
        async with self._read() as conn:
            version = int(await scalar(conn, "PRAGMA data_version"))
            kept = self._states
            if kept is not None and kept[:2] == (version, self._state_writes):
                return kept[2]  # the same snapshot: nothing changed
            rows = await conn.execute_fetchall(f"SELECT {STATE_COLUMNS} FROM instigator_state")
            states = MappingProxyType(
                {(s.instigator.kind, s.instigator.name): s for s in map(state_from_row, rows)}
            )
            self._states = (version, self._state_writes, states)
        return states

    async def set_instigator_status(
        self, instigator: Instigator, status: InstigatorStatus, *, now: datetime
    ) -> InstigatorState:
        return await self._upsert_state(instigator, "status", status.value, now)

    async def set_cursor(
        self, instigator: Instigator, cursor: str | None, *, now: datetime
    ) -> InstigatorState:
        return await self._upsert_state(instigator, "cursor", cursor, now)

    async def ensure_instigators(self, instigators: Sequence[Instigator], *, now: datetime) -> None:
        if not instigators:
            return
        at = enc_time(now)
        rows = [(i.kind.value, i.name, at, at) for i in instigators]
        await self._on_thread(self._writing_states(partial(_ensure_states, rows=rows)))

    async def _upsert_state(
        self, instigator: Instigator, column: str, value: str | None, now: datetime
    ) -> InstigatorState:
        params = (instigator.kind.value, instigator.name, value, enc_time(now))
        body = partial(_upsert_state, column=column, params=params)
        return await self._on_thread(self._writing_states(body))

    # ---- housekeeping ------------------------------------------------------------------------

    async def purge(self, *, now: datetime, retention: Retention) -> PurgeCounts:
        return await self._on_thread(partial(_purge, now=now, retention=retention))

    async def change_token(self) -> int:
        """`PRAGMA data_version` moves when another connection commits; our own commits
        that changed runs are counted beside it."""
        async with self._read() as conn:
            version = await scalar(conn, "PRAGMA data_version")
        return (int(version) << 32) | (self._run_commits & 0xFFFFFFFF)

    async def wait_for_change(self, token: int, *, max_wait: float) -> int:
        """The first call makes this store the listener of the doorbell beside the file;
        other processes ring it after committing a change to runs. The token is
        `PRAGMA data_version`, which moves only for other connections' commits: what this
        store object writes its own caller already knows about."""
        if self._bell is None:
            self._bell = Doorbell(self._bell_path)
            self._listening = self._bell.listen()
        if not self._listening:  # the path is too long for a socket: poll the counter
            with anyio.move_on_after(max_wait):
                # Another process's commits can only be seen by reading the counter.
                while (new := await self._data_version()) == token:  # noqa: ASYNC110
                    await anyio.sleep(NO_BELL_POLL_S)
                return new
            return token
        # Given back the token it just returned, nothing can have slipped by: a commit
        # since then has rung the bell, and the ring waits in the socket. Else look first.
        if token != self._last_token:
            new = await self._data_version()
            if new != token:
                self._last_token = new
                return new
        await self._bell.wait(max_wait)
        self._last_token = await self._data_version()
        return self._last_token

    async def _data_version(self) -> int:
        async with self._read() as conn:
            return int(await scalar(conn, "PRAGMA data_version"))

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
        decide = partial(
            take_lease, holder=holder, pid=pid, host=host, now=now, ttl=ttl, dead_holder=dead_holder
        )
        return await self._on_thread(partial(_replace_lease, decide=decide))

    async def renew_lease(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        times = (enc_time(now), enc_time(now + ttl))
        await self._on_thread(partial(_renew_lease, lease=lease, times=times))
        return dataclasses.replace(lease, heartbeat_at=utc(now), expires_at=utc(now + ttl))

    async def release_lease(self, lease: Lease) -> None:
        """Marks the lease lapsed (expires_at = since) but keeps the row, and its epoch."""
        await self._on_thread(partial(_release_lease, lease=lease))

    async def current_lease(self) -> Lease | None:
        async with self._read() as conn:
            rows = list(await conn.execute_fetchall(_LEASE))
        return lease_from_row(rows[0]) if rows else None

    # ---- run events and logs -------------------------------------------------------------------

    async def add_run_event(
        self, run_id: str, kind: str, *, at: datetime, data: Mapping[str, Any] | None = None
    ) -> None:
        rows = [(run_id, enc_time(at), kind, dumps(dict(data or {})))]
        await self._on_thread(partial(_insert_for_run, run_id=run_id, sql=_ADD_EVENT, rows=rows))

    async def run_events(self, run_id: str) -> list[RunEvent]:
        async with self._read() as conn:
            rows = await conn.execute_fetchall(_RUN_EVENTS, (run_id,))
        return [
            RunEvent(run_id=run_id, seq=seq, at=dec_time(at), kind=kind, data=json.loads(data))
            for seq, at, kind, data in rows
        ]

    async def append_logs(self, run_id: str, lines: Sequence[tuple[datetime, str, str]]) -> None:
        if not lines:
            return
        rows = [(run_id, enc_time(at), stream, text) for at, stream, text in lines]
        await self._on_thread(partial(_insert_for_run, run_id=run_id, sql=_ADD_LOG, rows=rows))

    async def read_logs(self, run_id: str, *, after_seq: int = 0) -> list[LogLine]:
        async with self._read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT seq, at, stream, text FROM run_logs WHERE run_id = ? AND seq > ? "
                "ORDER BY seq",
                (run_id, after_seq),
            )
        return [
            LogLine(run_id=run_id, seq=seq, at=dec_time(at), stream=stream, text=text)
            for seq, at, stream, text in rows
        ]


# ---- transaction bodies (on the connection's thread, inside `_on_thread`) ----------------------


def _ensure_states(tx: SyncTx, rows: Sequence[tuple[str, str, str, str]]) -> None:
    tx.conn.executemany(_ENSURE_STATE, rows)


def _upsert_state(tx: SyncTx, column: str, params: tuple[Any, ...]) -> InstigatorState:
    """`column` (status or cursor) of one instigator's state set, the row made if new."""
    row = tx.conn.execute(
        f"INSERT INTO instigator_state (instigator_kind, instigator_name, {column}, "
        "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
        f"{column} = excluded.{column}, updated_at = excluded.updated_at "
        f"RETURNING {STATE_COLUMNS}",
        params,
    ).fetchone()
    return state_from_row(row)


def _purge(tx: SyncTx, now: datetime, retention: Retention) -> PurgeCounts:
    ticks = runs = 0
    if retention.skipped_ticks is not None:
        ticks += tx.conn.execute(
            "DELETE FROM ticks WHERE status = 'SKIPPED' AND tick_at < ?",
            (enc_time(now - retention.skipped_ticks),),
        ).rowcount
    if retention.ticks is not None:
        ticks += tx.conn.execute(
            "DELETE FROM ticks WHERE status <> 'SKIPPED' AND tick_at < ?",
            (enc_time(now - retention.ticks),),
        ).rowcount
    if retention.runs is not None:
        # Events, logs and tag rows go with their runs (ON DELETE CASCADE).
        runs = tx.conn.execute(
            f"DELETE FROM runs WHERE status IN {SQL_TERMINAL} AND ended_at < ?",
            (enc_time(now - retention.runs),),
        ).rowcount
        tx.runs_changed = runs > 0
    return PurgeCounts(ticks=ticks, runs=runs)


def _read_lease(conn: sqlite3.Connection) -> Lease | None:
    row = conn.execute(_LEASE).fetchone()
    return None if row is None else lease_from_row(row)


def _replace_lease(tx: SyncTx, decide: Callable[[Lease | None], Lease]) -> Lease:
    """The lease `decide` makes of the current one, written in its place."""
    lease = decide(_read_lease(tx.conn))
    tx.conn.execute(
        f"INSERT OR REPLACE INTO lease (id, {LEASE_COLUMNS}) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
        (
            lease.holder,
            lease.epoch,
            lease.pid,
            lease.host,
            enc_time(lease.since),
            enc_time(lease.heartbeat_at),
            enc_time(lease.expires_at),
        ),
    )
    return lease


def _renew_lease(tx: SyncTx, lease: Lease, times: tuple[str, str]) -> None:
    """The lease's heartbeat and expiry moved to `times`, if it is still the one held."""
    cursor = tx.conn.execute(
        "UPDATE lease SET heartbeat_at = ?, expires_at = ? "
        "WHERE id = 1 AND holder = ? AND epoch = ?",
        (*times, lease.holder, lease.epoch),
    )
    if cursor.rowcount != 1:
        raise LeaseLostError(lease.epoch)


def _release_lease(tx: SyncTx, lease: Lease) -> None:
    tx.conn.execute(
        "UPDATE lease SET expires_at = since WHERE id = 1 AND holder = ? AND epoch = ?",
        (lease.holder, lease.epoch),
    )


def _insert_for_run(tx: SyncTx, run_id: str, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of a run's events or logs; the foreign key fails when there is no such run."""
    try:
        tx.conn.executemany(sql, rows)
    except sqlite3.IntegrityError as e:
        raise RunNotFoundError(run_id) from e


_ENSURE_STATE = (
    "INSERT INTO instigator_state (instigator_kind, instigator_name, last_tick_at, "
    "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)

_LEASE = f"SELECT {LEASE_COLUMNS} FROM lease WHERE id = 1"

_ADD_EVENT = "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)"

_ADD_LOG = "INSERT INTO run_logs (run_id, at, stream, text) VALUES (?, ?, ?, ?)"

# A run's events, the first (`run.enqueued`, seq 0) read from the run row itself; stores
# written before schema version 2 hold it as a row, which is then shown instead.
_RUN_EVENTS = """
SELECT 0, created_at, 'run.enqueued',
       json_object('instigator', instigator_kind || ':' || instigator_name, 'tick_id', tick_id)
  FROM runs
 WHERE run_id = ?1
   AND NOT EXISTS (SELECT 1 FROM run_events WHERE run_id = ?1 AND kind = 'run.enqueued')
UNION ALL
SELECT seq, at, kind, data FROM run_events WHERE run_id = ?1
ORDER BY 1
"""
