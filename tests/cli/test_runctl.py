"""`tickd runs [show]`, `logs`, `trigger`, `cancel`, `rerun`, `backfill`, `status` and
`purge`, in process against a SQLite store (the daemon's moves played by hand), and the
exit codes through a real process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from daemon.adapters.sqlite_store import SqliteStore
from daemon.client import new_run
from daemon.domain.runs import PRIORITY_TAG, InstigatorKind, Run, RunStatus
from daemon.ports import RunQuery

from .home import CliHome

T = TypeVar("T")

JOBS = """
from daemon import DailyPartitions, StaticPartitions, job

@job(executor="thread")
def quick(context):
    pass

@job(executor="thread", tags={"db": "warehouse"}, priority=5,
     partitions=DailyPartitions(start="2026-01-01", timezone="Europe/Berlin"))
def daily(context):
    pass

@job(executor="thread", partitions=StaticPartitions(["eu", "us", "apac"]))
def regional(context):
    pass
"""


class Home(CliHome):
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(root, capsys, {"jobs.py": JOBS})

    def with_store(self, fn: Callable[[SqliteStore], Awaitable[T]]) -> T:
        async def body() -> T:
            store = await SqliteStore.open(self.store)
            try:
                return await fn(store)
            finally:
                await store.close()

        return anyio.run(body, backend="asyncio")

    def runs(self) -> list[Run]:
        return self.with_store(lambda s: s.list_runs(RunQuery(limit=None)))

    def get(self, run_id: str) -> Run:
        run = self.with_store(lambda s: s.get_run(run_id))
        assert run is not None
        return run

    def add(self, job: str = "quick", **fields: Any) -> Run:
        run = new_run(job, now=datetime.now(UTC), **fields)
        self.with_store(lambda s: s.create_runs([run]))
        return run

    def move(self, run_id: str, *statuses: RunStatus, at: datetime | None = None) -> None:
        async def moves(store: SqliteStore) -> None:
            for status in statuses:
                await store.transition_run(run_id, status, now=at or datetime.now(UTC))

        self.with_store(moves)


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Home:
    made = Home(tmp_path, capsys)
    made.with_store(lambda s: s.instigator_states())  # create the store
    return made


@pytest.fixture
def fake_daemon(home: Home) -> Iterator[Callable[[RunStatus], None]]:
    """Start a thread that plays the daemon: every queued run goes to the given status."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(outcome: RunStatus) -> None:
        def loop() -> None:
            while not stop.is_set():
                for run in home.runs():
                    if run.status is RunStatus.QUEUED:
                        home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING, outcome)
                time.sleep(0.05)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


# ---- runs and runs show -------------------------------------------------------------------


def test_runs_lists_newest_first_with_filters(home: Home) -> None:
    a = home.add(tags={"team": "data"})
    b = home.add("daily", partition_key="2026-01-02")
    home.move(b.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FAILURE)

    assert [r["run_id"] for r in home.json("runs")] == [b.run_id, a.run_id]
    assert [r["run_id"] for r in home.json("runs", "list", "--status", "failure")] == [b.run_id]
    assert [r["run_id"] for r in home.json("runs", "--tag", "team=data")] == [a.run_id]
    assert [r["run_id"] for r in home.json("runs", "--job", "quick", "--limit", "1")] == [a.run_id]
    code, out, _ = home.run("runs")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["RUN", "ID", "JOB"]


def test_runs_show_prints_the_run_and_its_events(home: Home) -> None:
    run = home.add(run_config={"x": 1})
    home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS)

    shown = home.json("runs", "show", run.run_id)

    assert shown["run_id"] == run.run_id
    assert shown["status"] == "SUCCESS"
    assert shown["run_config"] == {"x": 1}
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[-3:] == ["run.starting", "run.running", "run.success"]
    assert set(shown["events"][0]) == {"seq", "at", "kind", "data"}
    code, out, _ = home.run("runs", "show", run.run_id)
    assert code == 0
    assert f"run         {run.run_id}" in out
    assert "run.success" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["runs", "show"], 2, "runs show needs a RUN_ID"),
        (["runs", "show", "x", "--status", "QUEUED"], 2, "--status filter the run list"),
        (["runs", "abc"], 2, "invalid choice: 'abc'"),
        (["runs", "list", "abc"], 2, "write `tickd runs show RUN_ID`"),
        (["runs", "--status", "DONE"], 2, "'DONE' is not a run status"),
        (["runs", "show", "nope"], 1, "no run with id 'nope'"),
    ],
)
def test_runs_refusals(home: Home, argv: list[str], code: int, message: str) -> None:
    got, out, err = home.run(*argv)
    assert got == code
    assert out == ""
    assert message in err


# ---- logs ---------------------------------------------------------------------------------


def _append(home: Home, run_id: str, *lines: tuple[str, str]) -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    rows = [(now, stream, text) for stream, text in lines]
    home.with_store(lambda s: s.append_logs(run_id, rows))


def test_logs_prints_time_stream_and_text(home: Home) -> None:
    run = home.add()
    _append(home, run.run_id, ("stdout", "hello"), ("stderr", "oops"))

    code, out, _ = home.run("logs", run.run_id)

    assert code == 0
    assert out.splitlines() == [
        "2026-03-01T12:00:00.123+00:00 stdout hello",
        "2026-03-01T12:00:00.123+00:00 stderr oops",
    ]
    code, out, _ = home.run("logs", run.run_id, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["stream"], r["text"]) for r in records] == [("stdout", "hello"), ("stderr", "oops")]
    assert home.run("logs", "nope")[0] == 1


def test_logs_follow_prints_new_lines_until_the_run_ends(home: Home) -> None:
    run = home.add()
    home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING)
    _append(home, run.run_id, ("stdout", "first"))

    def job() -> None:
        time.sleep(0.7)
        _append(home, run.run_id, ("stdout", "second"))
        home.move(run.run_id, RunStatus.SUCCESS)

    worker = threading.Thread(target=job)
    worker.start()
    code, out, _ = home.run("logs", run.run_id, "--follow")
    worker.join()

    assert code == 0
    assert [line.split(" ", 2)[2] for line in out.splitlines()] == ["first", "second"]


# ---- trigger ------------------------------------------------------------------------------


def test_trigger_queues_a_manual_run_with_the_jobs_tags_and_priority(home: Home) -> None:
    code, out, err = home.run(
        "trigger",
        "daily",
        "--partition",
        "2026-01-05",
        "--config",
        '{"full": true}',
        "--tag",
        "by=me",
    )

    assert code == 0, err
    (run,) = home.runs()
    assert out.strip() == run.run_id
    assert f"queued run of daily: {run.run_id}" in err
    assert run.instigator.kind is InstigatorKind.MANUAL and run.instigator.name == "daily"
    assert run.partition_key == "2026-01-05"
    assert run.run_config == {"full": True}
    assert run.tags == {"db": "warehouse", "by": "me", PRIORITY_TAG: "5"}
    assert run.priority == 5


def test_trigger_json_and_run_key_dedup(home: Home, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"day": "2026-03-14"}')

    first = home.json(
        "trigger", "quick", "--config", f"@{config}", "--run-key", "k", "--priority", "3"
    )
    again = home.json("trigger", "quick", "--run-key", "k")

    assert set(first) == {"created", "deduplicated_by", "run"}
    assert (first["created"], first["deduplicated_by"]) == (True, None)
    assert first["run"]["run_config"] == {"day": "2026-03-14"}
    assert first["run"]["priority"] == 3
    assert (again["created"], again["deduplicated_by"]) == (False, "run_key")
    assert again["run"]["run_id"] == first["run"]["run_id"]
    assert len(home.runs()) == 1


def test_trigger_of_an_active_partition_reports_the_existing_run(home: Home) -> None:
    first = home.json("trigger", "regional", "--partition", "eu")
    again = home.json("trigger", "regional", "--partition", "eu")
    assert (again["created"], again["deduplicated_by"]) == (False, "partition")
    assert again["run"]["run_id"] == first["run"]["run_id"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["quick", "--config", "{bad"], "--config is not valid JSON"),
        (["quick", "--config", "[1, 2]"], "--config must be a JSON object, not list"),
        (["quick", "--config", "@/no/such/file.json"], "--config @/no/such/file.json: cannot read"),
        (["quik"], "no job named 'quik'; did you mean 'quick'?"),
        (["quick", "--partition", "x"], "job 'quick' has no partitions; leave out --partition"),
        (["daily"], "job 'daily' is partitioned"),
        (["daily", "--partition", "2025-12-31"], "--partition: partition key '2025-12-31'"),
        (["regional", "--partition", "mars"], "expected one of 'eu', 'us', 'apac'"),
        (["quick", "--tag", "nokey"], "'nokey' is not a tag; write it as key=value"),
        (["quick", "--tag", f"{PRIORITY_TAG}=high"], "the priority tag takes a whole number"),
        (["quick", "--priority", "high"], "'high' is not a whole number"),
        (["quick", "--run-key", " "], "--run-key is empty"),
    ],
)
def test_trigger_refuses_bad_input_and_queues_nothing(
    home: Home, argv: list[str], message: str
) -> None:
    code, out, err = home.run("trigger", *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert home.runs() == []


def test_trigger_without_a_store_exits_1_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home(tmp_path, capsys)
    code, _, err = home.run("trigger", "quick")
    assert code == 1
    assert "no store there yet" in err
    assert not home.store.exists()


def test_trigger_wait_exits_0_on_success_and_1_otherwise(
    home: Home, fake_daemon: Callable[[RunStatus], None]
) -> None:
    fake_daemon(RunStatus.SUCCESS)
    code, _, err = home.run("trigger", "quick", "--wait")
    assert code == 0, err
    assert "finished: SUCCESS" in err


def test_trigger_wait_exits_1_when_the_run_fails(
    home: Home, fake_daemon: Callable[[RunStatus], None]
) -> None:
    fake_daemon(RunStatus.FAILURE)
    code, out, err = home.run("trigger", "quick", "--wait", "--json")
    assert code == 1
    assert json.loads(out)["run"]["status"] == "FAILURE"
    assert "no daemon is running on this store" in err  # the fake holds no lease


# ---- cancel and rerun ---------------------------------------------------------------------


def test_cancel_a_queued_run_at_once(home: Home) -> None:
    run = home.add()
    shown = home.json("cancel", run.run_id)
    assert shown["status"] == "CANCELED"
    assert home.get(run.run_id).status is RunStatus.CANCELED


def test_cancel_a_running_run_asks_the_daemon(home: Home) -> None:
    run = home.add()
    home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING)

    code, _, err = home.run("cancel", run.run_id)

    assert code == 0
    assert "is CANCELING, but no daemon is running on this store" in err
    assert home.get(run.run_id).status is RunStatus.CANCELING


def test_cancel_of_a_finished_or_unknown_run_exits_1(home: Home) -> None:
    run = home.add()
    home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS)
    code, _, err = home.run("cancel", run.run_id)
    assert code == 1
    assert f"run {run.run_id} already finished with SUCCESS" in err
    assert home.get(run.run_id).status is RunStatus.SUCCESS
    assert home.run("cancel", "nope")[0] == 1


def test_rerun_queues_a_copy_that_names_its_parent(home: Home) -> None:
    run = home.add("daily", partition_key="2026-01-03", run_config={"a": 1}, tags={"t": "v"})
    home.move(run.run_id, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FAILURE)

    result = home.json("rerun", run.run_id)

    assert result["created"] is True
    again = result["run"]
    assert again["parent_run_id"] == run.run_id
    assert again["attempt"] == 1
    assert (again["job"], again["partition_key"], again["run_config"], again["tags"]) == (
        "daily",
        "2026-01-03",
        {"a": 1},
        {"t": "v"},
    )
    assert again["instigator"] == {"kind": "manual", "name": "daily"}
    assert home.run("rerun", "nope")[0] == 1


# ---- backfill -----------------------------------------------------------------------------


def test_backfill_twice_queues_each_partition_once(home: Home) -> None:
    first = home.json("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-05")
    assert first["partitions"] == 5
    assert [c["partition_key"] for c in first["created"]] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
    ]
    assert first["deduplicated"] == []
    run = home.get(first["created"][0]["run_id"])
    assert run.instigator.kind is InstigatorKind.BACKFILL and run.instigator.name == "daily"
    assert run.run_key == "backfill:2026-01-01"
    assert run.tags["db"] == "warehouse" and run.priority == 5

    # even once the runs finished, the same range is not queued again
    for created in first["created"]:
        home.move(created["run_id"], RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCESS)
    code, out, _ = home.run("backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-06")
    assert code == 0
    assert out.splitlines() == [
        "backfill daily 2026-01-01..2026-01-06: 6 partitions, 1 queued, 5 deduplicated",
        "  5 already backfilled before (run_key backfill:KEY)",
    ]
    assert len(home.runs()) == 6


def test_backfill_skips_partitions_with_an_active_run(home: Home) -> None:
    home.json("trigger", "regional", "--partition", "us")
    result = home.json("backfill", "regional", "--from", "eu", "--to", "apac", "--priority", "-1")
    assert [c["partition_key"] for c in result["created"]] == ["eu", "apac"]
    assert [(d["partition_key"], d["by"]) for d in result["deduplicated"]] == [("us", "partition")]
    assert home.get(result["created"][0]["run_id"]).priority == -1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["quick", "--from", "a", "--to", "b"], "job 'quick' has no partitions"),
        (["daily", "--from", "2026-13-01", "--to", "2026-01-02"], "--from: partition key"),
        (["daily", "--from", "2026-01-05", "--to", "2026-01-01"], "swap --from and --to"),
        (["regional", "--from", "apac", "--to", "eu"], "comes before --from 'apac'"),
        (["daily", "--from", "2026-01-01"], "the following arguments are required: --to"),
        (["nope", "--from", "a", "--to", "b"], "no job named 'nope'"),
    ],
)
def test_backfill_refusals_queue_nothing(home: Home, argv: list[str], message: str) -> None:
    code, _, err = home.run("backfill", *argv)
    assert code == 2
    assert message in err
    assert home.runs() == []


# ---- status and purge ---------------------------------------------------------------------


def _lease(home: Home, *, now: datetime, ttl: timedelta, release: bool = False) -> None:
    async def take(store: SqliteStore) -> None:
        lease = await store.acquire_lease(holder="node-1", pid=4242, host="box", now=now, ttl=ttl)
        if release:
            await store.release_lease(lease)

    home.with_store(take)


def test_status_is_0_only_with_a_fresh_heartbeat(home: Home) -> None:
    code, out, _ = home.run("status", "--json")
    assert code == 1
    assert json.loads(out)["state"] == "none"

    _lease(home, now=datetime.now(UTC), ttl=timedelta(seconds=30))
    code, out, _ = home.run("status", "--json")
    assert code == 0
    status = json.loads(out)
    assert (status["state"], status["healthy"], status["holder"], status["pid"]) == (
        "live",
        True,
        "node-1",
        4242,
    )
    assert set(status) >= {"since", "heartbeat_at", "expires_at", "heartbeat_age_s", "lease_ttl_s"}
    code, out, _ = home.run("status")
    assert code == 0
    assert out.splitlines()[0].split() == ["daemon", "running"]
    assert "pid 4242 on box" in out


def test_status_stale_lapsed_and_released_exit_1(home: Home) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    _lease(home, now=old, ttl=timedelta(hours=1))  # not expired, but no heartbeat for 5 min
    code, out, _ = home.run("status", "--json")
    assert (code, json.loads(out)["state"]) == (1, "stale")

    _lease(home, now=old, ttl=timedelta(seconds=30))
    code, out, _ = home.run("status", "--json")
    assert (code, json.loads(out)["state"]) == (1, "lapsed")

    _lease(home, now=datetime.now(UTC), ttl=timedelta(seconds=30), release=True)
    code, out, _ = home.run("status")
    assert code == 1
    assert "stopped cleanly" in out


def test_status_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = Home(tmp_path, capsys)
    code, out, err = home.run("status", "--json")
    assert code == 1
    assert json.loads(out)["state"] == "no_store"
    assert "no store there yet" in err
    assert not home.store.exists()


def test_purge_follows_the_configured_retention(home: Home, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old, recent = home.add(), home.add()
    home.move(
        old.run_id,
        RunStatus.STARTING,
        RunStatus.RUNNING,
        RunStatus.SUCCESS,
        at=now - timedelta(days=20),
    )
    home.move(
        recent.run_id,
        RunStatus.STARTING,
        RunStatus.RUNNING,
        RunStatus.SUCCESS,
        at=now - timedelta(days=5),
    )
    active = home.add()
    toml = tmp_path / "tickd.toml"
    toml.write_text('[retention]\nruns = "10d"\n')

    assert home.json("purge")["runs"] == 0  # the default keeps 90 days
    counts = home.json("purge", "--config", str(toml))

    assert counts == {
        "ticks": 0,
        "runs": 1,
        "retention": {"skipped_ticks": 604800.0, "ticks": 2592000.0, "runs": 864000.0},
    }
    assert {r.run_id for r in home.runs()} == {recent.run_id, active.run_id}
    code, out, _ = home.run("purge")
    assert code == 0
    assert out.startswith("purged 0 ticks and 0 finished runs (kept: skipped ticks 7d")


# ---- through a real process --------------------------------------------------------------


def test_exit_codes_through_a_real_process(home: Home) -> None:
    done = home.process("trigger", "quick", "--config", "{bad")
    assert done.returncode == 2
    assert "--config is not valid JSON" in done.stderr
    assert home.runs() == []

    done = home.process("trigger", "quick")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert home.get(run_id).status is RunStatus.QUEUED

    done = home.process("cancel", run_id)
    assert done.returncode == 0
    done = home.process("cancel", run_id)
    assert done.returncode == 1
    assert "already finished with CANCELED" in done.stderr

    assert home.process("status").returncode == 1
