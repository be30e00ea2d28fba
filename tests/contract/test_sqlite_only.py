"""What only the SQLite store has: a file (its mode, its identity, its schema version),
migrations, a full disk, and other processes on the same file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from daemon.adapters.memory_store import MemoryStore
from daemon.adapters.open_store import open_store
from daemon.adapters.sqlite_checkpoint import BACKSTOP_BYTES
from daemon.adapters.sqlite_file import (
    APPLICATION_ID,
    LATEST_VERSION,
    migrations,
    scalar,
)
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.sqlite_ticks import AHEAD_MIN
from daemon.domain.limits import ConcurrencyLimits
from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import (
    InstigatorStatus,
    Outcome,
    StateUpdate,
    Tick,
    TickCommit,
    TickStatus,
)
from daemon.errors import (
    IllegalTransitionError,
    NotATickdStoreError,
    StoreFullError,
    StoreLocationError,
    StoreTooNewError,
)
from daemon.ports import RunQuery, TickQuery

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")

SCHEMA = [
    ("index", "run_events_run", "run_events"),
    ("index", "run_logs_run", "run_logs"),
    ("index", "run_tags_key_value", "run_tags"),
    ("index", "runs_active_partition_uq", "runs"),
    ("index", "runs_created", "runs"),
    ("index", "runs_delayed", "runs"),
    ("index", "runs_finished", "runs"),
    ("index", "runs_in_flight", "runs"),
    ("index", "runs_job_created", "runs"),
    ("index", "runs_queue", "runs"),
    ("index", "runs_run_key_uq", "runs"),
    ("index", "runs_unfinished_by_instigator", "runs"),
    ("index", "ticks_instigator_tick_at", "ticks"),
    ("index", "ticks_tick_at", "ticks"),
    ("table", "instigator_state", "instigator_state"),
    ("table", "lease", "lease"),
    ("table", "run_events", "run_events"),
    ("table", "run_logs", "run_logs"),
    ("table", "run_tags", "run_tags"),
    ("table", "runs", "runs"),
    ("table", "ticks", "ticks"),
]


def run(n: int, **fields: object) -> Run:
    return Run(
        run_id=f"run-{n:05d}",
        job="job",
        status=RunStatus.QUEUED,
        instigator=SCHEDULE,
        created_at=T0 + timedelta(seconds=n),
        **fields,  # type: ignore[arg-type]
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "tickd.db")
    yield opened
    await opened.close()


async def test_a_new_store_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "state" / "tickd.db"  # missing parents are created
    store = await SqliteStore.open(path)
    await store.create_runs([run(1)])
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        assert file.stat().st_mode & 0o777 == 0o600, file
    await store.close()


async def test_the_migrations_build_the_expected_schema(store: SqliteStore, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "tickd.db") as db:
        objects = db.execute(
            "SELECT type, name, tbl_name FROM sqlite_schema "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        assert objects == SCHEMA
        assert db.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        unique = {
            name: (is_unique, partial)
            for _, name, is_unique, _, partial in db.execute("PRAGMA index_list(runs)")
        }
        assert unique["runs_run_key_uq"] == (1, 1)
        assert unique["runs_active_partition_uq"] == (1, 1)


async def test_a_version_1_store_is_migrated_and_shows_each_enqueued_event_once(
    tmp_path: Path,
) -> None:
    """Version 1 wrote `run.enqueued` as a row; later versions read it from the run."""
    path = tmp_path / "tickd.db"
    with sqlite3.connect(path) as db:
        for statement in migrations()[0].statements:
            db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO runs (run_id, job, status, instigator_kind, instigator_name, "
            "created_at, tags) VALUES ('old', 'job', 'QUEUED', 'schedule', 'nightly', "
            "'2026-01-01T00:00:00.000000+00:00', '{\"team\": \"data\"}')"
        )
    store = await SqliteStore.open(path)
    try:
        await store.create_runs([run(1, tags={"team": "ops"})])
        for run_id in ("old", "run-00001"):
            kinds = [e.kind for e in await store.run_events(run_id)]
            assert kinds == ["run.enqueued"], run_id
        (event,) = await store.run_events("run-00001")
        assert event.data == {"instigator": "schedule:nightly", "tick_id": None}
        assert event.at == T0 + timedelta(seconds=1)
        tagged = await store.list_runs(RunQuery(tags={"team": "ops"}))
        assert [r.run_id for r in tagged] == ["run-00001"]
        assert [r.run_id for r in await store.list_runs(RunQuery(tags={"team": "data"}))] == ["old"]
    finally:
        await store.close()


async def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "tickd.db"
    store = await SqliteStore.open(path)
    await store.create_runs([run(1, run_key="k")])
    await store.close()
    store = await SqliteStore.open(path)
    result = await store.create_runs([run(2, run_key="k")])
    assert result.deduplicated[0][1].run_id == "run-00001"
    await store.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"hello", b"not a database, just some text\n" * 20],
    ids=["empty", "short", "text"],
)
async def test_a_file_that_is_not_sqlite_is_refused_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    if not content:  # an empty file is a new database, ours to create
        await (await SqliteStore.open(path)).close()
        return
    with pytest.raises(NotATickdStoreError, match="not a SQLite database"):
        await SqliteStore.open(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]


@pytest.mark.parametrize("application_id", [0, 0x12345678])
async def test_another_applications_database_is_refused_untouched(
    tmp_path: Path, application_id: int
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('ada')")
        db.execute(f"PRAGMA application_id = {application_id}")
    db.close()
    before = digest(path)
    with pytest.raises(NotATickdStoreError, match="left untouched"):
        await SqliteStore.open(path)
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["other.db"]


async def test_a_store_from_a_newer_tickd_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tickd.db"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    db.close()
    before = digest(path)
    with pytest.raises(StoreTooNewError) as refused:
        await SqliteStore.open(path)
    assert (refused.value.found, refused.value.supported) == (LATEST_VERSION + 1, LATEST_VERSION)
    assert digest(path) == before


async def test_a_bad_location_names_the_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreLocationError, match="cannot create directory"):
        await SqliteStore.open(blocker / "sub" / "tickd.db")
    with pytest.raises(StoreLocationError, match="is a directory"):
        await SqliteStore.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreLocationError, match="permissions"):
            await SqliteStore.open(folder / "tickd.db")
    finally:
        folder.chmod(0o700)


async def test_a_full_disk_is_a_clear_error_and_keeps_nothing(store: SqliteStore) -> None:
    await store.create_runs([run(1)])
    conn = store._conn  # the test reaches in to shrink the database's size limit
    assert conn is not None
    ((pages,),) = await conn.execute_fetchall("PRAGMA page_count")
    await conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [run(n, run_config={"blob": "x" * 2000}) for n in range(2, 200)]
    with pytest.raises(StoreFullError, match="is full"):
        await store.create_runs(big)
    await conn.execute("PRAGMA max_page_count = 1073741823")
    assert [r.run_id for r in await store.list_runs(RunQuery())] == ["run-00001"]
    assert len((await store.create_runs(big)).created) == len(big)


async def test_another_connections_commits_move_the_change_token(tmp_path: Path) -> None:
    a = await SqliteStore.open(tmp_path / "tickd.db")
    b = await SqliteStore.open(tmp_path / "tickd.db")
    before = await a.change_token()
    await b.create_runs([run(1)])
    assert await a.change_token() != before
    await a.close()
    await b.close()


async def test_two_connections_never_move_or_claim_one_run_twice(tmp_path: Path) -> None:
    a = await SqliteStore.open(tmp_path / "tickd.db")
    b = await SqliteStore.open(tmp_path / "tickd.db")
    await a.create_runs([run(n) for n in range(1, 31)])
    claimed: list[list[str]] = []

    async def claim(store: SqliteStore, node: str) -> None:
        for _ in range(4):
            runs = await store.claim_runs(
                node_id=node, limit=5, limits=ConcurrencyLimits(), now=T0 + timedelta(days=1)
            )
            claimed.append([r.run_id for r in runs])

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, a, "a")
        tg.start_soon(claim, b, "b")
    every = [run_id for batch in claimed for run_id in batch]
    assert len(every) == len(set(every)) == 30
    await a.transition_run("run-00001", RunStatus.CANCELED, now=T0)
    with pytest.raises(IllegalTransitionError):
        await b.transition_run("run-00001", RunStatus.CANCELED, now=T0)
    await a.close()
    await b.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    store: SqliteStore, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "tickd.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock ...
    release = threading.Timer(0.1, other.execute, ("ROLLBACK",))  # ... for 100 ms
    release.start()
    with anyio.move_on_after(0.03):  # our BEGIN waits in SQLite's busy handler: cancel it
        await store.create_runs([run(1)])
    # The BEGIN still went through on aiosqlite's thread once the lock was free; it must
    # have been rolled back, or this write would find a transaction already open.
    result = await store.create_runs([run(2)])
    release.join()
    other.close()
    assert [r.run_id for r in result.created] == ["run-00002"]
    assert [r.run_id for r in await store.list_runs(RunQuery())] == ["run-00002"]


async def test_a_state_write_cancelled_while_waiting_for_the_lock_still_lands(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Writes other than run creation are not abandoned: cancelled while another process
    holds the write lock, they wait for it, commit and return, so the caller knows."""
    nightly = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")
    other = sqlite3.connect(tmp_path / "tickd.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 100 ms
    release = threading.Timer(0.1, other.execute, ("ROLLBACK",))
    release.start()
    written = None
    with anyio.move_on_after(0.03):
        written = await store.set_cursor(nightly, "c1", now=T0)
        await anyio.lowlevel.checkpoint()  # the cancellation lands here, after the write
    release.join()
    other.close()
    assert written is not None and written.cursor == "c1"
    assert (await store.instigator_states())[(nightly.kind, "nightly")].cursor == "c1"


HAMMER = textwrap.dedent(
    """
    import json, os, sys, time
    from datetime import UTC, datetime, timedelta
    import anyio
    from daemon.adapters.sqlite_store import SqliteStore
    from daemon.domain.runs import Instigator, InstigatorKind, Run, RunStatus

    path, me, go = sys.argv[1], sys.argv[2], sys.argv[3]
    sensor = Instigator(kind=InstigatorKind.SENSOR, name="inbox")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def run(n, **keys):
        return Run(run_id=f"{me}-{n}", job="job", status=RunStatus.QUEUED,
                   instigator=sensor, created_at=t0 + timedelta(microseconds=n), **keys)

    async def main():
        store = await SqliteStore.open(path)
        open(f"{go}.{me}", "w").close()  # ready
        while not os.path.exists(go):  # both start together
            time.sleep(0.001)
        created, n = [], 0
        offset = 0 if me == "a" else 7  # overlapping, in a different order
        for i in range(40):
            batch = []
            for j in range(5):
                n += 1
                batch.append(run(n, run_key=f"k{(offset + i * 5 + j) % 200}"))
                n += 1
                batch.append(run(n, partition_key=f"p{(offset + i + j) % 50}"))
            result = await store.create_runs(batch)
            created += [r.run_id for r in result.created]
        await store.close()
        print(json.dumps(created))

    anyio.run(main)
    """
)


def test_two_processes_on_one_file_create_each_key_once(tmp_path: Path) -> None:
    path = tmp_path / "tickd.db"
    go = tmp_path / "go"
    anyio.run(_prepare, path)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(path), me, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    deadline = time.monotonic() + 30
    while not all(Path(f"{go}.{me}").exists() for me in ("a", "b")):
        assert time.monotonic() < deadline, "the child processes did not start"
        time.sleep(0.005)
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert "locked" not in err
    created = [json.loads(out) for out, _ in outputs]
    assert not set(created[0]) & set(created[1])
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT count(*), count(DISTINCT run_key) FROM runs").fetchone()
        partitions = db.execute("SELECT count(DISTINCT partition_key) FROM runs").fetchone()
    db.close()
    # 200 run keys and 50 partitions (their runs stay QUEUED, so each partition once).
    assert rows == (250, 200)
    assert partitions == (50,)
    assert len(created[0]) + len(created[1]) == 250


async def _prepare(path: Path) -> None:
    await (await SqliteStore.open(path)).close()


async def test_open_store_by_location(tmp_path: Path) -> None:
    for location in (":memory:", "memory://", "memory://scratch"):
        opened = await open_store(location)
        assert isinstance(opened, MemoryStore)
        await opened.close()
    for location in (str(tmp_path / "a.db"), f"sqlite://{tmp_path / 'b.db'}"):
        opened = await open_store(location)
        assert isinstance(opened, SqliteStore)
        await opened.close()
    assert (tmp_path / "b.db").exists()
    with pytest.raises(StoreLocationError, match="not supported yet"):
        await open_store("postgresql://localhost/tickd")
    with pytest.raises(StoreLocationError, match="unknown scheme 'redis'"):
        await open_store("redis://localhost")


async def test_instigator_states_follow_writes_of_this_store_and_of_other_processes(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The daemon reads every state each heartbeat; the store answers from memory while
    nothing changed, so each write, ours or another process's, must show at once."""
    nightly = Instigator(kind=InstigatorKind.SCHEDULE, name="nightly")
    await store.ensure_instigators([nightly], now=T0)
    assert (await store.instigator_states())[(nightly.kind, "nightly")].status is None
    await store.set_instigator_status(nightly, InstigatorStatus.STOPPED, now=T0)
    assert (await store.instigator_states())[(nightly.kind, "nightly")].status is (
        InstigatorStatus.STOPPED
    )
    with sqlite3.connect(tmp_path / "tickd.db") as other:  # the CLI, say
        other.execute("UPDATE instigator_state SET status = 'RUNNING', cursor = 'c7'")
    state = (await store.instigator_states())[(nightly.kind, "nightly")]
    assert (state.status, state.cursor) == (InstigatorStatus.RUNNING, "c7")
    again = await store.instigator_states()
    assert again is await store.instigator_states()  # unchanged: the same snapshot ...
    with pytest.raises(TypeError):
        again[(nightly.kind, "other")] = state  # type: ignore[index]  # ... read-only
    await store.set_cursor(nightly, "c8", now=T0)
    assert (await store.instigator_states())[(nightly.kind, "nightly")].cursor == "c8"
    assert again[(nightly.kind, "nightly")].cursor == "c7"  # a snapshot stays as it was


async def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    """The store's connection checkpoints only past the backstop; the checkpointer copies
    the log back after commits, on a thread of its own (real time: a bounded wait)."""
    store = await SqliteStore.open(tmp_path / "tickd.db")
    try:
        async with store._read() as conn:
            assert await scalar(conn, "PRAGMA page_size") == 4096  # a new file's
            assert await scalar(conn, "PRAGMA wal_autocheckpoint") == BACKSTOP_BYTES // 4096
        assert store._checkpointer.thread is None  # only reads so far
        for n in range(1, 41):
            await store.create_runs([run(n, run_key=f"k{n}")])
        checkpointer = store._checkpointer
        with anyio.fail_after(10):
            while checkpointer.last is None or checkpointer.last[0] != checkpointer.last[1]:  # noqa: ASYNC110 - another thread's progress
                await anyio.sleep(0.05)
        assert checkpointer.checkpoints >= 1
        frames, copied = checkpointer.last
        assert frames == copied > 0
    finally:
        await store.close()
    assert store._checkpointer.thread is not None
    assert not store._checkpointer.thread.is_alive()
    reopened = await SqliteStore.open(tmp_path / "tickd.db")
    assert len(await reopened.list_runs(RunQuery(limit=None))) == 40
    await reopened.close()


async def test_another_process_enqueue_wakes_the_waiter_by_its_doorbell(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The daemon's dispatcher waits on the doorbell; the CLI (another store object on
    the file) rings it after committing runs. Given back the token it returned, the store
    waits without reading; with nothing changed, it returns that token at max_wait."""
    token = await store.wait_for_change(-1, max_wait=0)
    assert await store.wait_for_change(token, max_wait=0.01) == token  # nothing changed
    cli = await SqliteStore.open(tmp_path / "tickd.db")
    try:
        async with anyio.create_task_group() as tg:

            async def enqueue() -> None:
                await anyio.sleep(0.05)
                await cli.create_runs([run(1)])

            tg.start_soon(enqueue)
            with anyio.fail_after(20):  # the fallback read would come after 60 s
                new = await store.wait_for_change(token, max_wait=60)
        assert new != token
    finally:
        await cli.close()


async def test_without_a_doorbell_the_change_counter_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store path too long for a Unix socket has no doorbell: the waiter reads the
    change counter every NO_BELL_POLL_S instead of only at max_wait."""
    monkeypatch.setattr("daemon.adapters.sqlite_store.NO_BELL_POLL_S", 0.01)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    waiter = await SqliteStore.open(deep / "tickd.db")
    cli = await SqliteStore.open(deep / "tickd.db")
    try:
        token = await waiter.wait_for_change(-1, max_wait=0)
        assert not waiter._listening
        await cli.create_runs([run(1)])
        with anyio.fail_after(20):
            assert await waiter.wait_for_change(token, max_wait=60) != token
    finally:
        await cli.close()
        await waiter.close()


async def test_a_store_made_with_other_pages_keeps_them(tmp_path: Path) -> None:
    """A file whose page size was set before it became a store keeps it, and its
    checkpoint backstop is the same in bytes."""
    path = tmp_path / "tickd.db"
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA page_size = 16384")
        raw.execute("PRAGMA journal_mode = WAL")  # writes the header: the size is fixed
    store = await SqliteStore.open(path)
    try:
        async with store._read() as conn:
            assert await scalar(conn, "PRAGMA page_size") == 16384
            assert await scalar(conn, "PRAGMA wal_autocheckpoint") == BACKSTOP_BYTES // 16384
        await store.create_runs([run(1)])
        assert len(await store.list_runs(RunQuery())) == 1
    finally:
        await store.close()


def _fan_out(n: int, at: datetime) -> list[TickCommit]:
    """n schedules' ticks at `at`, one run each, keyed by the tick time."""
    key = at.isoformat()
    commits = []
    for i in range(n):
        who = Instigator(kind=InstigatorKind.SCHEDULE, name=f"s{i:05d}")
        tick = Tick(
            tick_id=f"tick-{key}-{i:05d}",
            instigator=who,
            status=TickStatus.SUCCESS,
            started_at=at,
            ended_at=at,
            scheduled_for=at,
        )
        made = Run(
            run_id=f"run-{key}-{i:05d}",
            job="job",
            status=RunStatus.QUEUED,
            instigator=who,
            created_at=at,
            run_key=key,
            tick_id=tick.tick_id,
        )
        commits.append(TickCommit(tick=tick, runs=(made,), state=StateUpdate(last_tick_at=at)))
    return commits


@pytest.mark.parametrize("blocked", [False, True])
async def test_a_large_commit_makes_its_ticks_ahead_only_when_every_run_is_created(
    store: SqliteStore, blocked: bool
) -> None:
    """From AHEAD_MIN ticks on, the ticks' rows are made on a helper thread assuming every
    run is created; one run turned away by the unique index (a schedule's tick time run
    before) sends the commit back to deciding from what the insert did."""
    at = T0 + timedelta(minutes=1)
    commits = _fan_out(AHEAD_MIN, at)
    if blocked:  # s00007's run for this tick time exists already
        (done,) = await store.commit_ticks(
            [
                dataclasses.replace(c, tick=dataclasses.replace(c.tick, tick_id="earlier"))
                for c in _fan_out(AHEAD_MIN, at)[7:8]
            ]
        )
    ticks = await store.commit_ticks(commits)
    outcomes = [t.decisions[0].outcome for t in ticks]
    expected = [Outcome.CREATED] * AHEAD_MIN
    if blocked:
        expected[7] = Outcome.DEDUPLICATED_RUN_KEY
        assert ticks[7].decisions[0].run_id == done.decisions[0].run_id
    assert outcomes == expected
    assert [t.decisions[0].run_id for t in ticks if t.decisions[0].outcome is Outcome.CREATED] == [
        c.runs[0].run_id for c, o in zip(commits, expected, strict=True) if o is Outcome.CREATED
    ]
    stored = {t.tick_id: t for t in await store.list_ticks(TickQuery(limit=None))}
    assert all(stored[t.tick_id] == t for t in ticks)
    assert len(await store.list_runs(RunQuery(limit=None))) == AHEAD_MIN
