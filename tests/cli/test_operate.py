"""`tickd schedules …` and `tickd sensors …`: in process against a SQLite store, and a few
through a real process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.runs import Instigator, InstigatorKind
from daemon.domain.ticks import InstigatorState, InstigatorStatus
from daemon.ports import RunQuery, TickQuery

from .home import CliHome

JOBS = """
from daemon import DailyPartitions, job

@job(executor="thread")
def quick(context):
    pass

@job(executor="thread", partitions=DailyPartitions(start="2026-01-01", timezone="Europe/Berlin"))
def daily(context):
    pass
"""

INSTIGATORS = """
from daemon import (RunRequest, Schedule, SensorResult, SkipReason, partitioned_schedule,
                    run_status_sensor, sensor)
from jobs import daily, quick

nightly = Schedule(name="nightly", cron="30 2 * * *", job=quick, timezone="Europe/Berlin")
hourly = Schedule(name="hourly", cron="30 * * * *", job=quick, timezone="Europe/Berlin",
                  default_status="stopped")
daily_schedule = partitioned_schedule(daily)

@sensor(job=quick)
def watcher(context):
    print("a sensor that prints")
    n = int(context.cursor or 0)
    if n >= 2:
        return SkipReason("seen enough")
    return SensorResult(run_requests=[RunRequest(run_key=f"k{n}", run_config={"n": n})],
                        cursor=str(n + 1))

@sensor(job=quick)
def broken(context):
    raise RuntimeError("boom")

@run_status_sensor(watched_jobs=[quick], job=daily)
def after_quick(context):
    return RunRequest(run_key=context.run.run_id, partition_key="2026-01-02")
"""


class Home(CliHome):
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(root, capsys, {"jobs.py": JOBS, "instigators.py": INSTIGATORS})

    def create_store(self) -> None:
        anyio.run(self._close_new, backend="asyncio")

    async def _close_new(self) -> None:
        await (await SqliteStore.open(self.store)).close()

    def states(self) -> dict[tuple[InstigatorKind, str], InstigatorState]:
        async def read() -> dict[tuple[InstigatorKind, str], InstigatorState]:
            store = await SqliteStore.open(self.store)
            try:
                return await store.instigator_states()
            finally:
                await store.close()

        return anyio.run(read, backend="asyncio")

    def counts(self) -> tuple[int, int]:
        async def read() -> tuple[int, int]:
            store = await SqliteStore.open(self.store)
            try:
                runs = await store.list_runs(RunQuery(limit=None))
                ticks = await store.list_ticks(TickQuery(limit=None))
            finally:
                await store.close()
            return len(runs), len(ticks)

        return anyio.run(read, backend="asyncio")

    def set_cursor(self, name: str, cursor: str) -> None:
        async def write() -> None:
            store = await SqliteStore.open(self.store)
            try:
                instigator = Instigator(kind=InstigatorKind.SENSOR, name=name)
                await store.set_cursor(instigator, cursor, now=datetime.now(UTC))
            finally:
                await store.close()

        anyio.run(write, backend="asyncio")


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Home:
    made = Home(tmp_path, capsys)
    made.create_store()
    return made


# ---- schedules list, start, stop ----------------------------------------------------------


def test_schedules_list_shows_status_source_and_next_fire(home: Home) -> None:
    code, out, _ = home.run("schedules", "list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"daily_schedule", "hourly", "nightly"}
    assert "running (default)" in lines["nightly"]
    assert " CET" in lines["nightly"] or " CEST" in lines["nightly"]  # the next fire, local
    assert "stopped (default)" in lines["hourly"]

    listed = {s["name"]: s for s in home.json("schedules", "list")}
    nightly = listed["nightly"]
    assert nightly["cron"] == ["30 2 * * *"]
    assert (nightly["timezone"], nightly["job"]) == ("Europe/Berlin", "quick")
    assert (nightly["status"], nightly["status_source"]) == ("running", "default")
    assert nightly["last_tick_at"] is None
    assert datetime.fromisoformat(nightly["next_fire_at"]).utcoffset() is not None
    assert listed["hourly"]["next_fire_at"] is None  # stopped: it will not fire


def test_stop_and_start_are_stored_as_an_operators_choice(home: Home) -> None:
    code, _, err = home.run("schedules", "stop", "nightly")
    assert code == 0
    assert "schedule 'nightly' stopped (it was running, default)" in err
    key = (InstigatorKind.SCHEDULE, "nightly")
    assert home.states()[key].status is InstigatorStatus.STOPPED

    started = home.json("schedules", "start", "hourly")
    assert started == {
        "name": "hourly",
        "kind": "schedule",
        "status": "running",
        "previous_status": "stopped",
        "previous_source": "default",
    }
    listed = {s["name"]: s for s in home.json("schedules", "list")}
    assert (listed["nightly"]["status"], listed["nightly"]["status_source"]) == (
        "stopped",
        "operator",
    )
    assert listed["nightly"]["next_fire_at"] is None
    assert (listed["hourly"]["status"], listed["hourly"]["status_source"]) == (
        "running",
        "operator",
    )


def test_an_unknown_name_exits_1_with_near_names(home: Home) -> None:
    code, out, err = home.run("schedules", "stop", "nighty")
    assert code == 1
    assert out == ""
    assert "no schedule or sensor named 'nighty'; did you mean 'nightly'?" in err
    assert home.states() == {}


def test_the_wrong_kind_names_the_right_command(home: Home) -> None:
    code, _, err = home.run("schedules", "stop", "watcher")
    assert code == 1
    assert "'watcher' is a sensor; use `tickd sensors stop watcher`" in err
    code, _, err = home.run("sensors", "preview", "nightly")
    assert code == 1
    assert "use `tickd schedules preview nightly`" in err
    assert home.states() == {}


def test_a_missing_action_is_bad_usage(home: Home) -> None:
    assert home.run("schedules")[0] == 2
    assert home.run("sensors", "frobnicate")[0] == 2


def test_list_without_a_store_shows_defaults_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home(tmp_path, capsys)  # no store created
    code, out, err = home.run("sensors", "list")
    assert code == 0
    assert "no store at" in err
    assert "watcher" in out
    assert not home.store.exists()
    code, _, err = home.run("schedules", "stop", "nightly")
    assert code == 1
    assert "no store there yet" in err
    assert not home.store.exists()


# ---- schedules preview -------------------------------------------------------------------


def _fires(home: Home, *argv: str) -> list[dict[str, Any]]:
    fires: list[dict[str, Any]] = home.json("schedules", "preview", *argv)["fires"]
    return fires


def test_preview_marks_the_spring_forward_gap_of_a_fixed_time_cron(home: Home) -> None:
    fires = _fires(home, "nightly", "--from", "2026-03-28T00:00", "--count", "3")

    assert [(f["local"], f["utc"], f["flags"]) for f in fires] == [
        ("2026-03-28T02:30:00+01:00", "2026-03-28T01:30:00+00:00", []),
        (
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T01:00:00+00:00",
            ["offset_changed", "moved_from_gap"],
        ),
        ("2026-03-30T02:30:00+02:00", "2026-03-30T00:30:00+00:00", []),
    ]
    assert fires[1]["utc_offset"] == "+02:00"
    assert "+01:00 -> +02:00" in fires[1]["note"]


def test_preview_marks_both_passes_of_a_fold_for_a_wildcard_cron(home: Home) -> None:
    # "30 * * * *" is a wildcard cron: it fires in both passes of the repeated hour.
    fires = _fires(home, "hourly", "--from", "2026-10-25T01:00+02:00", "--count", "4")

    assert [(f["utc"], f["flags"]) for f in fires] == [
        ("2026-10-24T23:30:00+00:00", []),
        ("2026-10-25T00:30:00+00:00", ["fold_first"]),
        ("2026-10-25T01:30:00+00:00", ["offset_changed", "fold_second"]),
        ("2026-10-25T02:30:00+00:00", []),
    ]


def test_preview_of_a_fixed_time_cron_in_a_fold_fires_once(home: Home) -> None:
    fires = _fires(home, "nightly", "--from", "2026-10-24T12:00Z", "--until", "2026-10-26T12:00Z")

    assert [(f["local"], f["flags"]) for f in fires] == [
        ("2026-10-25T02:30:00+02:00", ["fold_first"]),
        ("2026-10-26T02:30:00+01:00", ["offset_changed"]),
    ]
    assert "fires once, at the first" in fires[0]["note"]


def test_preview_text_is_a_plain_table_in_both_zones(home: Home) -> None:
    code, out, _ = home.run(
        "schedules", "preview", "nightly", "--from", "2026-03-29", "--count", "1"
    )
    assert code == 0
    header, table_header, row = out.splitlines()
    assert header == "nightly: 30 2 * * * in Europe/Berlin, job quick"
    assert table_header.split() == ["LOCAL", "(Europe/Berlin)", "UTC", "DST"]
    assert row.startswith("2026-03-29 03:00:00 CEST  2026-03-29 01:00:00 UTC  UTC offset")
    assert "\033[" not in out


def test_preview_of_a_partitioned_schedule_names_each_tick_partition(home: Home) -> None:
    fires = _fires(home, "daily_schedule", "--from", "2026-03-28T00:00", "--count", "2")
    assert [f["partition_key"] for f in fires] == ["2026-03-27", "2026-03-28"]


def test_preview_from_now_by_default(home: Home) -> None:
    preview = home.json("schedules", "preview", "nightly")
    assert len(preview["fires"]) == 10
    assert datetime.fromisoformat(preview["fires"][0]["utc"]) > datetime.now(UTC)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "yesterday"], "--from: 'yesterday' is not a time"),
        (["--until", "2026-01-01", "--from", "2026-02-01"], "is not after --from"),
        (["--count", "0"], "argument --count: '0' is not a positive whole number"),
        (["--count", "5000"], "--count 5000 is more than 1000"),
        (["--count", "2", "--until", "2027-01-01"], "not allowed with argument --count"),
    ],
)
def test_preview_refuses_bad_times_and_bounds(home: Home, argv: list[str], message: str) -> None:
    code, out, err = home.run("schedules", "preview", "nightly", *argv)
    assert code == 2
    assert out == ""
    assert message in err


# ---- sensors ---------------------------------------------------------------------------------


def test_sensors_list_shows_kind_status_and_cursor(home: Home) -> None:
    home.set_cursor("watcher", "7")
    listed = {s["name"]: s for s in home.json("sensors", "list")}
    assert set(listed) == {"watcher", "broken", "after_quick"}
    assert listed["watcher"]["kind"] == "sensor"
    assert listed["watcher"]["cursor"] == "7"
    assert listed["watcher"]["minimum_interval"] == 30.0
    assert listed["after_quick"]["kind"] == "run_status_sensor"
    assert listed["after_quick"]["watched_jobs"] == ["quick"]
    code, out, _ = home.run("sensors", "list")
    assert code == 0
    assert "run status" in out and "running (default)" in out


def test_sensor_preview_uses_the_stored_cursor_and_stores_nothing(home: Home) -> None:
    home.set_cursor("watcher", "1")

    preview = home.json("sensors", "preview", "watcher")  # the sensor's print went to stderr

    assert preview["outcome"] == "SUCCESS"
    assert (preview["cursor_before"], preview["cursor_source"], preview["cursor_after"]) == (
        "1",
        "stored",
        "2",
    )
    assert preview["requests"] == [
        {
            "job": "quick",
            "run_key": "k1",
            "partition_key": None,
            "run_config": {"n": 1},
            "tags": {},
            "priority": 0,
        }
    ]
    assert home.counts() == (0, 0)
    assert home.states()[(InstigatorKind.SENSOR, "watcher")].cursor == "1"


def test_sensor_preview_with_a_cursor_flag_and_a_skip(home: Home) -> None:
    code, out, err = home.run("sensors", "preview", "watcher", "--cursor", "5")
    assert code == 0
    assert out.splitlines() == [
        "watcher: evaluated with cursor '5' (--cursor)",
        "skipped: seen enough",
        "cursor unchanged",
    ]
    assert "a sensor that prints" in err
    assert "nothing was stored" in err


def test_sensor_preview_of_a_failing_sensor_exits_1(home: Home) -> None:
    preview_code, out, _ = home.run("sensors", "preview", "broken", "--json")
    assert preview_code == 1
    result = json.loads(out)
    assert result["outcome"] == "FAILURE"
    assert "RuntimeError: boom" in result["error"]
    assert home.counts() == (0, 0)


def test_run_status_sensor_preview_needs_a_finished_run(home: Home) -> None:
    code, _, err = home.run("sensors", "preview", "after_quick")
    assert code == 2
    assert "--run RUN_ID" in err
    code, _, err = home.run("sensors", "preview", "after_quick", "--run", "nope")
    assert code == 1
    assert "no run with id 'nope'" in err
    code, _, err = home.run("sensors", "preview", "watcher", "--run", "x")
    assert code == 2


def test_sensor_cursor_show_set_and_clear(home: Home) -> None:
    assert home.run("sensors", "cursor", "watcher")[1] == "-\n"
    code, _, err = home.run("sensors", "cursor", "watcher", "--set", "42")
    assert code == 0
    assert "cursor of sensor 'watcher' set to '42' (it was None)" in err
    assert home.json("sensors", "cursor", "watcher") == {
        "sensor": "watcher",
        "cursor": "42",
        "previous": "42",
    }
    assert home.json("sensors", "cursor", "watcher", "--clear")["cursor"] is None
    assert home.states()[(InstigatorKind.SENSOR, "watcher")].cursor is None


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["after_quick", "--set", "1"], 2, "run-status sensor; those have no cursor"),
        (["nightly", "--set", "1"], 1, "only sensors have a cursor"),
        (["watcher", "--set", ""], 2, "--set needs a value"),
        (["watcher", "--set", "1", "--clear"], 2, "not allowed with argument"),
        (["watchr", "--set", "1"], 1, "did you mean 'watcher'?"),
    ],
)
def test_sensor_cursor_refusals_change_nothing(
    home: Home, argv: list[str], code: int, message: str
) -> None:
    got, _, err = home.run("sensors", "cursor", *argv)
    assert got == code
    assert message in err
    assert home.states() == {}


def test_sensors_stop_and_start(home: Home) -> None:
    assert home.run("sensors", "stop", "watcher")[0] == 0
    assert home.states()[(InstigatorKind.SENSOR, "watcher")].status is InstigatorStatus.STOPPED
    listed = {s["name"]: s for s in home.json("sensors", "list")}
    assert (listed["watcher"]["status"], listed["watcher"]["status_source"]) == (
        "stopped",
        "operator",
    )


# ---- through a real process --------------------------------------------------------------


def test_a_real_process_previews_and_refuses(home: Home) -> None:
    done = home.process("schedules", "preview", "nightly", "--from", "2026-03-29", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fires"][0]["flags"] == ["offset_changed", "moved_from_gap"]

    done = home.process("sensors", "stop", "nope")
    assert done.returncode == 1
    assert "no schedule or sensor named 'nope'" in done.stderr
    assert done.stdout == ""

    done = home.process("sensors", "preview", "watcher")
    assert done.returncode == 0
    assert "a sensor that prints" not in done.stdout
    assert home.counts() == (0, 0)
