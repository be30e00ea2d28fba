"""How every write to the SQLite store runs, and the dispatcher's writes: claims and run
moves.

Each write is one whole transaction in plain `sqlite3` calls, run as a single call on
aiosqlite's connection thread (`run_transaction`): BEGIN, the statements and COMMIT cost
one hop between the event loop and that thread instead of one hop per statement. A hop
costs more than the statements on a busy host; the dispatcher writes once per cycle, and
an idle daemon's heartbeat every few seconds.

Compare-and-set lives in the statements: a move updates a run only from a status the
domain allows, a claim only a run still QUEUED, under BEGIN IMMEDIATE.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from daemon.adapters.store_codec import (
    RUN_COLUMNS,
    SQL_IN_FLIGHT,
    dec_time,
    dumps,
    enc_opt_time,
    enc_time,
    mapping,
    run_from_row,
)
from daemon.domain.limits import ConcurrencyLimits, LimitCounter
from daemon.domain.runs import Run, RunStatus, can_transition, legal_sources
from daemon.errors import IllegalTransitionError, RunNotFoundError, StoreError, TickdError
from daemon.ports import MoveAndClaim, RunMove

T = TypeVar("T")

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@dataclass(slots=True)
class SyncTx:
    """One open write transaction on the connection's thread."""

    conn: sqlite3.Connection
    location: str
    runs_changed: bool = False
    events: list[tuple[str, str, str, str]] = field(default_factory=list)  # run_events rows


async def run_transaction(
    conn: aiosqlite.Connection,
    location: str,
    body: Callable[[SyncTx], T],
) -> tuple[SyncTx, T] | None:
    """BEGIN IMMEDIATE, `body`, the events it queued, COMMIT, as one call on aiosqlite's
    thread; rolled back if anything raises. None when BEGIN found the file locked by
    another process (after busy_timeout): the caller backs off and tries again.

    aiosqlite has no public way to run a function on its thread; `_execute` (and `_conn`)
    have been its way to do so in every release this project supports (see pyproject)."""

    def call() -> tuple[SyncTx, T] | None:
        raw: sqlite3.Connection = conn._conn
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _BUSY:
                return None
            raise
        tx = SyncTx(raw, location)
        try:
            result = body(tx)
            if tx.events:
                raw.executemany(_ADD_EVENT, tx.events)
            raw.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                raw.execute("ROLLBACK")
            raise
        return tx, result

    done: tuple[SyncTx, T] | None = await conn._execute(call)  # type: ignore[no-untyped-call]
    return done


# ---- bodies ----------------------------------------------------------------------------


def move_and_claim(
    tx: SyncTx,
    moves: Sequence[RunMove],
    *,
    node_id: str,
    limit: int,
    limits: ConcurrencyLimits,
    now: datetime,
    start: Callable[[Run], RunMove | None] | None = None,
) -> MoveAndClaim:
    moved = move_runs(tx, moves)
    claimed = claim(tx, node_id=node_id, limit=limit, limits=limits, now=now, start=start)
    return MoveAndClaim(moved=tuple(moved), claimed=tuple(claimed))


def move_runs(tx: SyncTx, moves: Sequence[RunMove]) -> list[Run | TickdError]:
    """Each move a compare-and-set from the statuses the domain allows, all of them in one
    UPDATE (a run moved twice in one batch: in rounds, in order). Only the moves that
    matched nothing are read back, to say why."""
    by_index: dict[int, Run | TickdError] = {}
    todo = list(range(len(moves)))
    while todo:
        this_round: list[int] = []
        later: list[int] = []
        seen: set[str] = set()
        for i in todo:
            (later if moves[i].run_id in seen else this_round).append(i)
            seen.add(moves[i].run_id)
        todo = later
        batch = [moves[i] for i in this_round]
        rows = tx.conn.execute(_MOVE, (dumps([_move_row(m) for m in batch]),)).fetchall()
        moved = {row[0]: row for row in rows}
        missed = [m.run_id for m in batch if m.run_id not in moved]
        found: dict[str, str] = {}
        if missed:
            found = dict(tx.conn.execute(_STATUS_OF, (dumps(missed),)).fetchall())
        for i, m in zip(this_round, batch, strict=True):
            row = moved.get(m.run_id)
            if row is not None:
                by_index[i] = run_from_row(row)
                kind = f"run.{m.status.value.lower()}"
                tx.events.append((m.run_id, enc_time(m.now), kind, dumps(dict(m.event or {}))))
            elif m.run_id in found:
                by_index[i] = IllegalTransitionError(m.run_id, found[m.run_id], m.status.value)
            else:
                by_index[i] = RunNotFoundError(m.run_id)
        if moved:
            tx.runs_changed = True
    return [by_index[i] for i in range(len(moves))]


def claim(
    tx: SyncTx,
    *,
    node_id: str,
    limit: int,
    limits: ConcurrencyLimits,
    now: datetime,
    start: Callable[[Run], RunMove | None] | None = None,
) -> list[Run]:
    """Move the next runs in queue order that fit the limits to STARTING, and on with
    the move `start` returns for each (if any).

    The head of the queue is read first: the next `limit` due runs, fewer when the global
    maximum leaves fewer slots (counted in SQL). When none of them carries a tag that a
    limit counts, they all fit and are claimed as read. Otherwise `_admit` walks the
    queue with the limit counters. One UPDATE then writes each claimed run as it ends up
    (the domain's Run.moved_to decides a start move), compare-and-set on QUEUED."""
    if limit <= 0:
        return []
    due = enc_time(now)
    rows = tx.conn.execute(_HEAD, (due, limit, limits.max_concurrent_runs)).fetchall()
    limited = {lim.key for lim in limits.tag_limits}
    if limited and any(not limited.isdisjoint(_tags(row[7])) for row in rows):
        rows = _admit(tx.conn, limit, limits, due)
    if not rows:
        return []
    runs = [_starting(row, node_id) for row in rows]
    ids = dumps([r.run_id for r in runs])
    tx.conn.execute(_ADD_EVENTS, (ids, due, "run.starting", dumps({"node_id": node_id})))
    claimed: list[Run] = []
    writes: list[list[Any]] = []
    for run in runs:
        move = start(run) if start is not None else None
        if move is not None and can_transition(RunStatus.STARTING, move.status):
            at = enc_time(move.now)
            run = run.moved_to(move.status, now=dec_time(at), error=move.error)  # as stored
            kind = f"run.{move.status.value.lower()}"
            tx.events.append((run.run_id, at, kind, dumps(dict(move.event or {}))))
        claimed.append(run)
        writes.append(
            [
                run.run_id,
                run.status.value,
                enc_opt_time(run.started_at),
                enc_opt_time(run.ended_at),
                run.error,
            ]
        )
    cursor = tx.conn.execute(_CLAIM, (node_id, dumps(writes)))
    if cursor.rowcount != len(runs):  # cannot happen under BEGIN IMMEDIATE
        raise StoreError(f"store {tx.location}: runs changed during a claim")
    tx.runs_changed = True
    return claimed


@functools.lru_cache(maxsize=256)
def _tags(text: str) -> frozenset[str]:
    """The tag keys of a run's tags JSON (queued runs share a few tag sets)."""
    return frozenset(mapping(text))


def _starting(row: Any, node_id: str) -> Run:
    """A queued run's row, as the run claimed by `node_id`."""
    return run_from_row((*row[:2], RunStatus.STARTING, *row[3:18], node_id))


def _admit(conn: sqlite3.Connection, limit: int, limits: ConcurrencyLimits, due: str) -> list[Any]:
    """The rows of the runs to claim, in queue order, that fit the limits given what is
    in flight.

    The counter starts from the in-flight runs, counted per tag in SQL (run_tags), then
    walks the queue in chunks sized by how many runs the limits passed over so far: the
    work follows what is claimed, not the queue length, unless limits pass over many."""
    keys = dumps(sorted({lim.key for lim in limits.tag_limits}))
    counter = LimitCounter(limits)
    for key, value, count in conn.execute(_IN_FLIGHT_TAGS, (keys,)).fetchall():
        if key is None:
            counter.total = count
            continue
        # What LimitCounter.charge adds, for `count` in-flight runs tagged key=value.
        for i, tag_limit in enumerate(limits.tag_limits):
            slot = tag_limit.slot({key: value})
            if slot is not None:
                counter.counts[(i, slot)] += count
    admitted: list[Any] = []
    scanned = 0
    parsed: dict[str, dict[str, Any]] = {}  # tags JSON -> tags; many runs share them
    cursor = conn.execute(_QUEUE, (due,))
    try:
        while len(admitted) < limit and not counter.full():
            wanted = limit - len(admitted)
            ratio = scanned / len(admitted) if admitted else 1.0
            rows = cursor.fetchmany(min(int(wanted * ratio * 1.2) + 32, 8192))
            if not rows:
                break
            for row in rows:
                scanned += 1
                tags = parsed.get(row[7])
                if tags is None:
                    tags = parsed[row[7]] = mapping(row[7])
                if counter.admit(tags):
                    admitted.append(row)
                    if len(admitted) >= limit or counter.full():
                        break
    finally:
        cursor.close()
    return admitted


def _move_row(m: RunMove) -> list[Any]:
    """A move as _MOVE reads it."""
    return [
        m.run_id,
        m.status.value,
        enc_time(m.now),
        m.status.is_terminal,
        m.error,
        _SOURCES[m.status],
    ]


# ---- statements --------------------------------------------------------------------------

_QUEUE_ORDER = "ORDER BY priority DESC, created_at, run_id"

_QUEUE = f"""
SELECT {RUN_COLUMNS} FROM runs
 WHERE status = 'QUEUED' AND (not_before IS NULL OR not_before <= ?) {_QUEUE_ORDER}
"""

# The next ?2 due runs (?1: now), or fewer when the global maximum ?3 (NULL: none)
# leaves fewer slots free.
_HEAD = f"""
SELECT {RUN_COLUMNS} FROM runs
 WHERE status = 'QUEUED' AND (not_before IS NULL OR not_before <= ?1) {_QUEUE_ORDER}
 LIMIT (SELECT CASE WHEN ?3 IS NULL THEN ?2 ELSE max(0, min(?2, ?3 - count(*))) END
          FROM runs WHERE status IN {SQL_IN_FLIGHT})
"""

# ?2: a JSON array of [run_id, status, started_at, ended_at, error], one per claimed run.
_CLAIM = """
UPDATE runs SET node_id = ?1, status = m.value ->> 1, started_at = m.value ->> 2,
  ended_at = m.value ->> 3, error = m.value ->> 4
FROM json_each(?2) AS m
WHERE runs.run_id = m.value ->> 0 AND runs.status = 'QUEUED'
"""

# In flight: the total (key NULL), then per (key, value) of the limited keys.
_IN_FLIGHT_TAGS = f"""
SELECT NULL, NULL, count(*) FROM runs WHERE status IN {SQL_IN_FLIGHT}
UNION ALL
SELECT t.key, t.value, count(*) FROM runs AS r CROSS JOIN run_tags AS t
 WHERE r.status IN {SQL_IN_FLIGHT} AND t.run_id = r.run_id
   AND t.key IN (SELECT value FROM json_each(?))
 GROUP BY t.key, t.value
"""

# Run.moved_to in SQL, for a JSON array of moves [run_id, status, at, is_terminal, error,
# legal sources]: started_at set on the first RUNNING, ended_at on a final status, error
# kept unless a new one is given; only from a status the domain allows. A run appears at
# most once per array (UPDATE … FROM applies one matching row).
_MOVE = f"""
UPDATE runs SET status = m.value ->> 1,
  started_at = CASE WHEN m.value ->> 1 = 'RUNNING' AND runs.started_at IS NULL
                    THEN m.value ->> 2 ELSE runs.started_at END,
  ended_at = CASE WHEN m.value ->> 3 THEN m.value ->> 2 ELSE runs.ended_at END,
  error = COALESCE(m.value ->> 4, runs.error)
FROM json_each(?) AS m
WHERE runs.run_id = m.value ->> 0
  AND runs.status IN (SELECT value FROM json_each(m.value -> 5))
RETURNING {RUN_COLUMNS}
"""
_SOURCES = {status: sorted(s.value for s in legal_sources(status)) for status in RunStatus}

_STATUS_OF = "SELECT run_id, status FROM runs WHERE run_id IN (SELECT value FROM json_each(?))"

_ADD_EVENT = "INSERT INTO run_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)"

# One event (?2 at, ?3 kind, ?4 data) for each run id of the JSON array ?1.
_ADD_EVENTS = """
INSERT INTO run_events (run_id, at, kind, data)
SELECT value, ?2, ?3, ?4 FROM json_each(?1)
"""
