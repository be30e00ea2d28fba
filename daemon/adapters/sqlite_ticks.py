"""Tick commits and run creation on SQLite: dedup by the unique indexes, in plain
`sqlite3` calls run as one call on aiosqlite's connection thread (see sqlite_dispatch's
`run_transaction`), inside the transaction the store opened.

Batches travel as one JSON parameter read with `json_each`, so a tick of 10,000 requests
costs a handful of statements, not 10,000.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from daemon.adapters.sqlite_batch import Column, Composite, insert_select
from daemon.adapters.sqlite_dispatch import SyncTx
from daemon.adapters.store_codec import (
    SQL_ACTIVE,
    Batch,
    check_unique_ids,
    decision,
    decisions_value,
    dumps,
    enc_opt_time,
    enc_time,
    make_decision,
)
from daemon.domain.runs import Instigator, InstigatorKind, Run
from daemon.domain.ticks import (
    Decision,
    KeyedRequests,
    Outcome,
    Tick,
    TickCommit,
    stamp,
    stamp_ticks,
)
from daemon.errors import DuplicateIdError, LeaseLostError
from daemon.slotted import replacer

_SCHEDULE = InstigatorKind.SCHEDULE

# A commit of at least this many ticks makes their rows on a helper thread meanwhile
# (`_Meanwhile`); below, starting a thread costs about what it saves.
AHEAD_MIN = 1_000
_with_decisions = replacer(Tick, "decisions")


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
    _check_lease(tx.conn, lease_epoch)
    probed: set[str] = set()
    if any(c.keyed is not None for c in commits):
        batches = [
            b if c.keyed is None else _keyed_batch(tx.conn, c.tick.instigator, c.keyed)
            for c, b in zip(commits, batches, strict=True)
        ]
        probed = {
            r.run_id
            for c, b in zip(commits, batches, strict=True)
            if c.keyed is not None
            for r in b.runs
        }
    ahead = None
    if len(commits) >= AHEAD_MIN and all(len(b.kept) == len(b.runs) for b in batches):
        ahead = _Meanwhile(partial(_made_ahead, commits, batches))
    resolved = _insert_runs(
        tx,
        [r for b in batches for r in b.kept],
        lazy=ahead is not None,
        before_insert=None if ahead is None else ahead.start,
        probed=probed,
    )
    fault("commit_ticks.after_runs")
    if resolved is None:  # every run created, as the ticks made ahead assumed
        assert ahead is not None
        made: tuple[list[Tick], list[tuple[str, list[Any]]]] = ahead.result()
        ticks, statements = made
    else:
        if ahead is not None:
            ahead.result()  # not what happened: made again below
        ticks = _decided(commits, batches, resolved)
        statements = _tick_statements(ticks)
    _insert_ticks(tx.conn, ticks, statements)
    fault("commit_ticks.after_tick")
    _upsert_states(tx.conn, commits)
    fault("commit_ticks.after_state")
    return ticks


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """What `prepare` made of a commit before its time is known: its statements, with
    that time a parameter (`_AT`) still to be bound, and its ticks with the decisions they
    get when every run is created."""

    batches: list[Batch]
    runs: tuple[str, list[Any]] | None  # the runs' insert; None: no runs
    run_count: int
    tags: tuple[str, list[Any]] | None  # their tags' insert; None: no tags
    ticks: list[Tick]
    statements: list[tuple[str, list[Any]]]  # the ticks', then the states'


def prepare(commits: Sequence[TickCommit]) -> Prepared | None:
    """`commits`' statements made ahead, or None for commits that need the store's answers
    to make theirs: requests a stored run may block (a sensor's, keyed), runs of one tick
    that collapse, cursors written. A plain schedule's ticks never do."""
    batches = [Batch.of(commit.runs) for commit in commits]
    runs = [r for b in batches for r in b.kept]
    if (
        any(c.keyed is not None for c in commits)
        or any(len(b.kept) != len(b.runs) for b in batches)
        or any(c.state.set_cursor or c.state.cursor is not None for c in commits)
        or any(map(_probed_first, runs))
    ):
        return None
    ticks, statements = _made_ahead(commits, batches, prepared=True)
    statements.append(
        insert_select("instigator_state", _PREPARED_STATE_COLUMNS, commits, _KEEP_CURSOR)
    )
    insert = insert_select("runs", _PREPARED_RUN_COLUMNS, runs, _INSERT_RUNS_TAIL) if runs else None
    return Prepared(
        batches=batches,
        runs=insert,
        run_count=len(runs),
        tags=_tags_statement(runs),
        ticks=ticks,
        statements=statements,
    )


def commit_prepared(
    tx: SyncTx,
    commits: Sequence[TickCommit],
    prepared: Prepared,
    at: datetime,
    *,
    lease_epoch: int | None,
    fault: Callable[[str], None],
) -> list[Tick]:
    """`commit` of what `prepare` made, decided at `at`. `commits` and the prepared ticks
    are stamped at `at` on a helper thread while SQLite inserts the runs. If the unique
    indexes turn a run away, the insert is undone and the commit made as `commit` does."""
    _check_lease(tx.conn, lease_epoch)
    when = enc_time(at)
    stamping = _Meanwhile(partial(_stamp_all, commits, prepared.ticks, at))
    try:
        if prepared.runs is not None:
            sql, params = prepared.runs
            stamping.start()
            if not _insert_all(tx.conn, sql, _bound(params, when), prepared.run_count):
                stamping.result()
                return commit(tx, commits, prepared.batches, lease_epoch=None, fault=fault)
            tx.runs_changed = True
            if prepared.tags is not None:
                tx.conn.execute(*prepared.tags)
        fault("commit_ticks.after_runs")
        *ticks, states = [(sql, _bound(params, when)) for sql, params in prepared.statements]
        _insert_ticks(tx.conn, prepared.ticks, ticks)
        fault("commit_ticks.after_tick")
        tx.conn.execute(*states)
        fault("commit_ticks.after_state")
    finally:
        stamping.result()
    return prepared.ticks


def _stamp_all(commits: Sequence[TickCommit], ticks: Sequence[Tick], at: datetime) -> None:
    stamp(commits, at)
    stamp_ticks(ticks, at)


def _bound(params: list[Any], at: str) -> list[Any]:
    """`params` with the commit's time where `prepare` left it open."""
    return [at if p is _AT else p for p in params]


def _check_lease(conn: sqlite3.Connection, lease_epoch: int | None) -> None:
    if lease_epoch is not None:
        current = conn.execute("SELECT epoch FROM lease WHERE id = 1").fetchone()
        if current is None or current[0] != lease_epoch:
            raise LeaseLostError(lease_epoch)


def _upsert_states(conn: sqlite3.Connection, commits: Sequence[TickCommit]) -> None:
    """Each instigator's state after its ticks, in commit order. Commits that leave the
    cursor alone (every schedule's) go as one batch; those that write a cursor (sensors')
    one statement each, unless an instigator has both kinds in this call."""
    writes = [c.state.set_cursor or c.state.cursor is not None for c in commits]
    with_cursor: Sequence[TickCommit] = ()
    rest: Sequence[TickCommit] = commits
    if any(writes):
        writers = {c.tick.instigator for c, w in zip(commits, writes, strict=True) if w}
        if all(w or c.tick.instigator not in writers for c, w in zip(commits, writes, strict=True)):
            with_cursor = [c for c, w in zip(commits, writes, strict=True) if w]
            rest = [c for c, w in zip(commits, writes, strict=True) if not w]
        else:  # one instigator in both: keep its commits in order
            with_cursor, rest = commits, ()
    if with_cursor:
        conn.executemany(
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
                for c in with_cursor
            ],
        )
    if rest:
        conn.execute(*insert_select("instigator_state", _STATE_COLUMNS, rest, _KEEP_CURSOR))


def insert_runs(tx: SyncTx, kept: Sequence[Run]) -> dict[str, Decision]:
    """Insert `kept` (already collapsed) with dedup; each run's decision by run id."""
    resolved = _insert_runs(tx, kept, lazy=False)
    assert resolved is not None
    return resolved


def _insert_runs(
    tx: SyncTx,
    kept: Sequence[Run],
    *,
    lazy: bool,
    before_insert: Callable[[], None] | None = None,
    probed: Collection[str] = (),
) -> dict[str, Decision] | None:
    """`insert_runs`; when `lazy`, None if every run was created (the caller knows what
    their decisions are). `before_insert` is called as the insert statement starts.
    `probed`: ids of runs whose keys were looked up in this transaction already.

    The unique indexes decide: rows go in with ON CONFLICT DO NOTHING. Mostly every row
    goes in, which the statement's row count says; otherwise the insert is undone (to a
    savepoint) and made again with RETURNING, which says which rows were created.

    A sensor mostly asks again for what it asked for before, so a probe first finds the
    requests of sensors (and backfills, manual runs) that a stored run already blocks,
    and only the rest are encoded and sent; it runs inside the same BEGIN IMMEDIATE
    transaction, so nothing can change between probe and insert. A schedule's runs are
    keyed by tick times that only move forward: they go straight in,
    and the rare one an index turns away is looked up after.
    """
    resolved: dict[str, Decision] = {}
    if not kept:
        return resolved
    check_unique_ids(kept)
    keyed = [r for r in kept if _probed_first(r) and r.run_id not in probed]
    if keyed:
        _probe(tx.conn, keyed, resolved)
    fresh = [r for r in kept if r.run_id not in resolved]
    if not fresh:
        return resolved
    created = _insert_fresh(tx.conn, fresh, before_insert)  # None: every one
    if created is None or created:
        tx.runs_changed = True
        _insert_tags(
            tx.conn, fresh if created is None else [r for r in fresh if r.run_id in created]
        )
    if lazy and created is None and not resolved:
        return None
    blocked = []
    for run in fresh:
        if created is None or run.run_id in created:
            resolved[run.run_id] = decision(run, Outcome.CREATED, run.run_id)
        else:
            blocked.append(run)
    if blocked:  # a schedule's run blocked, or runs of one call blocking each other
        _probe(tx.conn, blocked, resolved)
        for run in blocked:
            if run.run_id not in resolved:
                raise DuplicateIdError("run", run.run_id)
    return resolved


def _probed_first(run: Run) -> bool:
    """Whether a stored run may well block `run`, so its keys are looked up before the
    insert: a sensor's (or backfill's, manual) run with a run_key or a partition. A
    schedule's keys are tick times that only move forward."""
    return (
        run.run_key is not None or run.partition_key is not None
    ) and run.instigator.kind is not _SCHEDULE


def _insert_fresh(
    conn: sqlite3.Connection, fresh: Sequence[Run], before: Callable[[], None] | None = None
) -> frozenset[str] | None:
    """Insert `fresh`; None when every run was created, else the ids of those that were.
    The row count tells whether all went in; only when some did not is the insert undone
    and made again with RETURNING (its rows cost a tenth of a fan-out's insert)."""
    sql, params = insert_select("runs", _RUN_COLUMNS, fresh, _INSERT_RUNS_TAIL)
    if before is not None:
        before()
    if _insert_all(conn, sql, params, len(fresh)):
        return None
    return frozenset(row[0] for row in conn.execute(f"{sql} {_RETURNING}", params))


def _insert_tags(conn: sqlite3.Connection, created: Sequence[Run]) -> None:
    """The tag rows of the `created` runs that have tags (one row per pair, for filters)."""
    if (statement := _tags_statement(created)) is not None:
        conn.execute(*statement)


def _tags_statement(runs: Sequence[Run]) -> tuple[str, list[Any]] | None:
    tagged = [[r.run_id, r.tags] for r in runs if r.tags]
    return (_INSERT_TAGS, [dumps(tagged)]) if tagged else None


def _insert_all(conn: sqlite3.Connection, sql: str, params: list[Any], count: int) -> bool:
    """Run the insert `sql`; True if its `count` rows all went in, else undone."""
    conn.execute("SAVEPOINT insert_runs")
    try:
        if conn.execute(sql, params).rowcount == count:
            return True
        conn.execute("ROLLBACK TO insert_runs")
        return False
    finally:
        conn.execute("RELEASE insert_runs")


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


def _keyed_batch(conn: sqlite3.Connection, instigator: Instigator, keyed: KeyedRequests) -> Batch:
    """The runs of `keyed` requests whose run_key no stored run holds, built once the
    run_key index has said which (one statement)."""
    params = [0, dumps(keyed.run_keys), instigator.kind, instigator.name]
    rows = conn.execute(_PROBE_RUN_KEYS, params).fetchall()
    return Batch.of_keyed(keyed, ((i, blocker) for _, i, blocker in rows))


def _decided(
    commits: Sequence[TickCommit], batches: Sequence[Batch], resolved: dict[str, Decision]
) -> list[Tick]:
    """Each commit's tick with its runs' decisions."""
    return [
        _with_decisions(commit.tick, batch.decisions(resolved))
        for commit, batch in zip(commits, batches, strict=True)
    ]


def _tick_statements(
    ticks: Sequence[Tick], *, prepared: bool = False
) -> list[tuple[str, list[Any]]]:
    """The inserts of `ticks`. Ticks of one decision (a schedule's) have it written by
    SQLite from its mostly shared parts; the others as JSON made here. `prepared`: with
    their times left open (`_AT`)."""
    one = [t for t in ticks if len(t.decisions) == 1]
    other = [t for t in ticks if len(t.decisions) != 1] if len(one) < len(ticks) else []
    statements = []
    if one:
        columns = _PREPARED_ONE_DECISION_TICK_COLUMNS if prepared else _ONE_DECISION_TICK_COLUMNS
        statements.append(insert_select("ticks", columns, one))
    if other:
        columns = _PREPARED_TICK_COLUMNS if prepared else _TICK_COLUMNS
        statements.append(insert_select("ticks", columns, other))
    return statements


def _made_ahead(
    commits: Sequence[TickCommit], batches: Sequence[Batch], *, prepared: bool = False
) -> tuple[list[Tick], list[tuple[str, list[Any]]]]:
    """The ticks of `commits` with the decisions they get when every run is created, and
    their inserts."""
    made = Outcome.CREATED
    created = {r.run_id: decision(r, made, r.run_id) for b in batches for r in b.runs}
    ticks = _decided(commits, batches, created)
    return ticks, _tick_statements(ticks, prepared=prepared)


def _insert_ticks(
    conn: sqlite3.Connection, ticks: Sequence[Tick], statements: list[tuple[str, list[Any]]]
) -> None:
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    except sqlite3.IntegrityError as e:  # the primary key: a tick committed before
        raise DuplicateIdError("tick", ", ".join(t.tick_id for t in ticks)) from e


class _Meanwhile:
    """A function run on a thread of its own while this one waits in SQLite (which runs
    a statement without holding the GIL): at a 10,000-schedule boundary, the ticks made
    (or stamped) meanwhile are ~25 ms of Python that no longer waits for the runs' insert.
    Started as that insert's statement starts: before, it would compete for the GIL with
    the making of that statement. Its error is raised by `result`."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._made: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tickd-meanwhile", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def _run(self) -> None:
        try:
            self._made = self._fn()
        except BaseException as exc:  # raised in the transaction's thread, by result()
            self._error = exc

    def result(self) -> Any:
        self.start()  # not started when no run needed inserting
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._made


# ---- statements --------------------------------------------------------------------------

_RUN_COLUMNS = (
    Column.attr("run_id", shared=False),
    Column.attr("job"),
    Column.attr("status"),  # StrEnum members are str: JSON and sqlite3 take them as they are
    Column.attr("instigator_kind", "instigator.kind"),
    Column.attr("instigator_name", "instigator.name"),
    Column.attr("created_at", encode=enc_time),
    Column.attr("priority"),
    Column.attr("tags", encode=dict, nested=True),
    Column.attr("run_config", encode=dict, nested=True),
    Column.attr("partition_key"),
    Column.attr("run_key"),
    Column.attr("tick_id"),
    Column.attr("started_at", encode=enc_opt_time),
    Column.attr("ended_at", encode=enc_opt_time),
    Column.attr("attempt"),
    Column.attr("parent_run_id"),
    Column.attr("error"),
    Column.attr("not_before", encode=enc_opt_time),
    Column.attr("node_id"),
)
_INSERT_RUNS_TAIL = "ON CONFLICT DO NOTHING"
# [[run_id, {key: value, …}], …] of created runs
_INSERT_TAGS = """
INSERT INTO run_tags (run_id, key, value)
SELECT r.value ->> 0, t.key, t.value FROM json_each(?1) AS r, json_each(r.value -> 1) AS t
"""
_RETURNING = "RETURNING run_id"

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

_TICK_COLUMNS = (
    Column.attr("tick_id", shared=False),
    Column.attr("instigator_kind", "instigator.kind"),
    Column.attr("instigator_name", "instigator.name"),
    Column.attr("status"),
    Column.attr("started_at", encode=enc_time),
    Column.attr("ended_at", encode=enc_opt_time),
    Column.attr("scheduled_for", encode=enc_opt_time),
    Column.attr("decisions", encode=decisions_value, nested=True, shared=False),
    Column.attr("skip_reason"),
    Column.attr("error"),
    Column.attr("cursor_before"),
    Column.attr("cursor_after"),
)


# The decisions column of a tick with one decision, as `decisions_value` makes it.
_ONE_DECISION = Composite(
    "decisions",
    "json_object('job', json_array({}), 'outcome', json_array({}), 'run_id', json_array({}),"
    " 'run_key', json_array({}), 'partition_key', json_array({}))",
    tuple(
        Column.attr(name, shared=shared)
        for name, shared in (
            ("job", True),
            ("outcome", True),
            ("run_id", False),
            ("run_key", True),
            ("partition_key", True),
        )
    ),
    source=lambda tick: tick.decisions[0],
)
_ONE_DECISION_TICK_COLUMNS = tuple(
    _ONE_DECISION if c.name == "decisions" else c for c in _TICK_COLUMNS
)

_STATE_COLUMNS = (
    Column.attr("instigator_kind", "tick.instigator.kind"),
    Column.attr("instigator_name", "tick.instigator.name"),
    Column.attr("last_tick_at", "state.last_tick_at", enc_opt_time),
    Column.attr("last_run_key", "state.last_run_key"),
    Column("updated_at", lambda c: c.tick.ended_at or c.tick.started_at, enc_time),
)
# The state after a tick that leaves the cursor alone; None leaves the other fields.
_KEEP_CURSOR = """
ON CONFLICT (instigator_kind, instigator_name) DO UPDATE SET
    last_tick_at = coalesce(excluded.last_tick_at, last_tick_at),
    last_run_key = coalesce(excluded.last_run_key, last_run_key),
    updated_at = excluded.updated_at
"""

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

# Where a prepared commit's time goes (`prepare`): every row reads this one object, so
# `insert_select` binds it once, as a parameter `_bound` fills when the commit is made.
_AT = object()


def _at(columns: Sequence[Column | Composite], *names: str) -> tuple[Column | Composite, ...]:
    return tuple(
        Column(c.name, lambda _: _AT) if isinstance(c, Column) and c.name in names else c
        for c in columns
    )


_PREPARED_RUN_COLUMNS = _at(_RUN_COLUMNS, "created_at")
_PREPARED_TICK_COLUMNS = _at(_TICK_COLUMNS, "started_at", "ended_at")
_PREPARED_ONE_DECISION_TICK_COLUMNS = _at(_ONE_DECISION_TICK_COLUMNS, "started_at", "ended_at")
_PREPARED_STATE_COLUMNS = _at(_STATE_COLUMNS, "updated_at")
