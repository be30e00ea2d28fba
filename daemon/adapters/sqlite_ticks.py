"""Tick commits and run creation on SQLite: dedup by the unique indexes, in plain
`sqlite3` calls run as one call on aiosqlite's connection thread (see sqlite_dispatch's
`run_transaction`), inside the transaction the store opened.

Batches travel as one JSON parameter read with `json_each`, so a tick of 10,000 requests
costs a handful of statements, not 10,000.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from daemon.adapters.sqlite_dispatch import SyncTx
from daemon.adapters.store_codec import (
    RUN_COLUMNS,
    SQL_ACTIVE,
    TICK_COLUMNS,
    Batch,
    check_unique_ids,
    decision,
    dumps,
    enc_opt_time,
    enc_time,
    make_decision,
    run_to_row,
    tick_to_row,
)
from daemon.domain.runs import Instigator, Run
from daemon.domain.ticks import Decision, Outcome, Tick, TickCommit
from daemon.errors import DuplicateIdError, LeaseLostError


def commit(
    tx: SyncTx,
    commits: Sequence[TickCommit],
    batches: Sequence[Batch],
    *,
    lease_epoch: int | None,
    fault: Callable[[str], None],
) -> list[Tick]:
    """The lease check (when `lease_epoch` is given), the runs (dedup by the unique
    indexes), the ticks with their decisions, the instigators' states. `fault` is called
    at named points between them (tests raise there)."""
    if lease_epoch is not None:
        current = tx.conn.execute("SELECT epoch FROM lease WHERE id = 1").fetchone()
        if current is None or current[0] != lease_epoch:
            raise LeaseLostError(lease_epoch)
    resolved = insert_runs(tx, [r for b in batches for r in b.kept])
    fault("commit_ticks.after_runs")
    ticks = [
        dataclasses.replace(commit.tick, decisions=batch.decisions(resolved))
        for commit, batch in zip(commits, batches, strict=True)
    ]
    if ticks:
        _insert_ticks(tx.conn, ticks)
    fault("commit_ticks.after_tick")
    tx.conn.executemany(
        _UPSERT_STATE,
        [
            (
                c.tick.instigator.kind.value,
                c.tick.instigator.name,
                c.state.set_cursor or c.state.cursor is not None,
                c.state.cursor,
                enc_opt_time(c.state.last_tick_at),
                c.state.last_run_key,
                enc_time(c.tick.ended_at or c.tick.started_at),
            )
            for c in commits
        ],
    )
    fault("commit_ticks.after_state")
    return ticks


def insert_runs(tx: SyncTx, kept: Sequence[Run]) -> dict[str, Decision]:
    """Insert `kept` (already collapsed) with dedup; each run's decision by run id.

    The unique indexes decide: rows go in with ON CONFLICT DO NOTHING and RETURNING says
    which were created. A probe first finds the requests a stored run already blocks, so
    that only the rest (usually few) are encoded in full and sent; it runs inside the same
    BEGIN IMMEDIATE transaction, so nothing can change between probe and insert.
    """
    resolved: dict[str, Decision] = {}
    if not kept:
        return resolved
    check_unique_ids(kept)
    keyed = [r for r in kept if r.run_key is not None or r.partition_key is not None]
    _probe(tx.conn, keyed, resolved)
    fresh = [r for r in kept if r.run_id not in resolved]
    if not fresh:
        return resolved
    rows = tx.conn.execute(_INSERT_RUNS, (dumps([run_to_row(r) for r in fresh]),)).fetchall()
    created = {row[0] for row in rows}
    if created:
        tx.runs_changed = True
    blocked = []
    for run in fresh:
        if run.run_id in created:
            resolved[run.run_id] = decision(run, Outcome.CREATED, run.run_id)
        else:
            blocked.append(run)
    if blocked:  # runs of one call that block each other across its commits
        _probe(tx.conn, blocked, resolved)
        for run in blocked:
            if run.run_id not in resolved:
                raise DuplicateIdError("run", run.run_id)
    return resolved


def _probe(conn: sqlite3.Connection, runs: Sequence[Run], resolved: dict[str, Decision]) -> None:
    """Record, for each of `runs` that a stored run blocks, the blocking run: by run_key
    first (at most one run ever), else by active partition.

    One statement: per instigator, its run keys as one flat JSON array joined to the
    run_key index; per job, its partition keys joined to the active-partition index."""
    by_instigator: dict[Instigator, list[Run]] = {}
    by_job: dict[str, list[Run]] = {}
    last: Instigator | None = None
    members: list[Run] = []
    for run in runs:
        if run.run_key is not None:
            if run.instigator is not last:  # runs of one tick share one Instigator
                last = run.instigator
                members = by_instigator.setdefault(last, [])
            members.append(run)
        if run.partition_key is not None:
            by_job.setdefault(run.job, []).append(run)
    selects: list[tuple[str, list[Any]]] = []
    groups: list[list[Run]] = []
    if len(by_instigator) > _FLAT_PROBE_MAX:
        # Many instigators with a few keys each (a fan-out of schedules): one join over
        # (kind, name, run_key) triples instead of one sub-select per instigator.
        keyed_all = [m for members in by_instigator.values() for m in members]
        triples = dumps(
            [[m.instigator.kind.value, m.instigator.name, m.run_key] for m in keyed_all]
        )
        selects.append((_PROBE_RUN_KEY_TRIPLES, [0, triples]))
        groups.append(keyed_all)
        by_instigator = {}
    for instigator, keyed in by_instigator.items():
        run_keys = dumps([m.run_key for m in keyed])
        selects.append((_PROBE_RUN_KEYS, [len(groups), run_keys, instigator.kind, instigator.name]))
        groups.append(keyed)
    key_groups = len(groups)
    for job, jobs_runs in by_job.items():
        partition_keys = dumps([m.partition_key for m in jobs_runs])
        selects.append((_PROBE_PARTITIONS, [len(groups), partition_keys, job]))
        groups.append(jobs_runs)
    if not selects:
        return
    by_partition: list[tuple[Run, str]] = []
    by_key = Outcome.DEDUPLICATED_RUN_KEY
    rows: list[Any] = []
    # SQLite allows at most 500 terms in one compound SELECT (SQLITE_MAX_COMPOUND_SELECT)
    for start in range(0, len(selects), _MAX_COMPOUND):
        chunk = selects[start : start + _MAX_COMPOUND]
        sql = " UNION ALL ".join(text for text, _ in chunk)
        rows += conn.execute(sql, [p for _, ps in chunk for p in ps]).fetchall()
    for group, i, blocker in rows:
        run = groups[group][i]
        if group < key_groups:
            resolved[run.run_id] = make_decision(
                run.job, by_key, blocker, run.run_key, run.partition_key
            )
        else:
            by_partition.append((run, blocker))
    for run, blocker in by_partition:
        if run.run_id not in resolved:
            resolved[run.run_id] = decision(run, Outcome.DEDUPLICATED_PARTITION, blocker)


def _insert_ticks(conn: sqlite3.Connection, ticks: Sequence[Tick]) -> None:
    try:
        conn.execute(_INSERT_TICKS, (dumps([tick_to_row(t) for t in ticks]),))
    except sqlite3.IntegrityError as e:  # the primary key: a tick committed before
        raise DuplicateIdError("tick", ", ".join(t.tick_id for t in ticks)) from e


# ---- statements --------------------------------------------------------------------------

_INSERT_RUNS = (
    f"INSERT INTO runs ({RUN_COLUMNS}) SELECT "
    + ", ".join(f"value ->> {i}" for i in range(len(RUN_COLUMNS.split(","))))
    # `WHERE true` settles SQLite's parse ambiguity of INSERT … SELECT … ON CONFLICT.
    + " FROM json_each(?) WHERE true ON CONFLICT DO NOTHING RETURNING run_id"
)

# The stored runs blocking requests, as (group, index in the group's JSON array, run_id).
# CROSS JOIN keeps json_each the outer loop (otherwise the planner may scan runs instead).
_PROBE_RUN_KEYS = """
SELECT ? AS grp, j.key, r.run_id FROM json_each(?) AS j CROSS JOIN runs AS r
 WHERE r.instigator_kind = ? AND r.instigator_name = ? AND r.run_key = j.value
"""

_PROBE_RUN_KEY_TRIPLES = """
SELECT ? AS grp, j.key, r.run_id FROM json_each(?) AS j CROSS JOIN runs AS r
 WHERE r.instigator_kind = j.value ->> 0 AND r.instigator_name = j.value ->> 1
   AND r.run_key = j.value ->> 2
"""
_FLAT_PROBE_MAX = 8

_PROBE_PARTITIONS = f"""
SELECT ? AS grp, j.key, r.run_id FROM json_each(?) AS j CROSS JOIN runs AS r
 WHERE r.job = ? AND r.partition_key = j.value
   AND r.partition_key IS NOT NULL AND r.status IN {SQL_ACTIVE}
"""

_INSERT_TICKS = (
    f"INSERT INTO ticks ({TICK_COLUMNS}) SELECT "
    + ", ".join(f"value ->> {i}" for i in range(len(TICK_COLUMNS.split(","))))
    + " FROM json_each(?)"
)

# ?3: whether to write the cursor (set_cursor, or a cursor given); None leaves the others.
_UPSERT_STATE = """
INSERT INTO instigator_state
    (instigator_kind, instigator_name, cursor, last_tick_at, last_run_key, updated_at)
VALUES (?1, ?2, CASE WHEN ?3 THEN ?4 END, ?5, ?6, ?7)
ON CONFLICT (instigator_kind, instigator_name) DO UPDATE SET
    cursor = CASE WHEN ?3 THEN ?4 ELSE cursor END,
    last_tick_at = coalesce(?5, last_tick_at),
    last_run_key = coalesce(?6, last_run_key),
    updated_at = ?7
"""

_MAX_COMPOUND = 400
