"""The operator's commands and the Python client against a real `tickd serve`."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.client import Client
from daemon.domain.runs import RunStatus

from .support import Tickd, clean_env, wait_for

pytestmark = pytest.mark.e2e

JOBS = """
import time
from daemon import DailyPartitions, job

@job(executor="thread")
def quick(context):
    context.log.info("quick.done", config=dict(context.run_config))

@job(executor="thread")
def fails(context):
    raise RuntimeError("this job always fails")

@job(executor="process")
def sleepy(context):
    print("sleeping", flush=True)
    time.sleep(30)

@job(executor="thread", partitions=DailyPartitions(start="2026-01-01", timezone="UTC"))
def daily(context):
    context.log.info("daily.done", partition=context.partition_key)
"""

RUN_FIELDS = {
    "run_id", "job", "status", "priority", "tags", "run_config", "partition_key", "run_key",
    "instigator", "tick_id", "created_at", "started_at", "ended_at", "attempt",
    "parent_run_id", "error",
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tickd]:
    home = Tickd(tmp_path_factory.mktemp("operator"))
    home.write("jobs.py", JOBS)
    home.serve()
    try:
        wait_for(lambda: home.run("status").returncode == 0, timeout=20)
        yield home
    finally:
        home.stop_all()


def _show(home: Tickd, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = home.json("runs", "show", run_id)
    return shown


def _runs(home: Tickd) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = home.json("runs", "--limit", "1000")
    return runs


def test_trigger_wait_runs_the_job_and_prints_the_documented_json(served: Tickd) -> None:
    done = served.run("trigger", "quick", "--config", '{"n": 1}', "--wait", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"created", "deduplicated_by", "run"}
    run = result["run"]
    assert set(run) >= RUN_FIELDS
    assert (run["status"], run["job"], run["run_config"]) == ("SUCCESS", "quick", {"n": 1})
    assert run["instigator"] == {"kind": "manual", "name": "quick"}
    for key in ("created_at", "started_at", "ended_at"):
        assert datetime.fromisoformat(run[key]).utcoffset() is not None

    shown = _show(served, run["run_id"])
    assert set(shown) >= RUN_FIELDS | {"events"}
    assert [e["kind"] for e in shown["events"]][-1] == "run.success"
    logs = served.run("logs", run["run_id"])
    assert logs.returncode == 0
    assert "quick.done" in logs.stdout


def test_trigger_wait_exits_1_when_the_run_fails(served: Tickd) -> None:
    done = served.run("trigger", "fails", "--wait")
    assert done.returncode == 1
    assert "finished: FAILURE" in done.stderr
    assert "this job always fails" in done.stderr


def test_malformed_config_exits_2_and_creates_nothing(served: Tickd) -> None:
    before = len(_runs(served))
    done = served.run("trigger", "quick", "--config", "{bad")
    assert done.returncode == 2
    assert "--config is not valid JSON" in done.stderr
    assert done.stdout == ""
    assert len(_runs(served)) == before


def test_cancel_stops_a_running_process_job(served: Tickd) -> None:
    done = served.run("trigger", "sleepy")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wait_for(lambda: _show(served, run_id)["status"] == "RUNNING", timeout=10)
    follow = subprocess.Popen(
        [sys.executable, "-m", "daemon", "logs", run_id, "--follow", *served.base_args()],
        cwd=served.home,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: served.run("logs", run_id).stdout.count("sleeping") == 1, timeout=10)
        canceled_at = time.monotonic()
        done = served.run("cancel", run_id)
        assert done.returncode == 0, done.stderr
        assert "CANCELING" in done.stderr
        wait_for(lambda: _show(served, run_id)["status"] == "CANCELED", timeout=5, every=0.05)
        took = time.monotonic() - canceled_at
        out, _ = follow.communicate(timeout=5)  # --follow ends with the run
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    print(f"cancel of a running process job took {took:.2f}s (incl. one CLI start)")
    assert follow.returncode == 0
    assert out.splitlines()[-1].endswith("stdout sleeping")
    shown = _show(served, run_id)
    assert "tickd cancel" in shown["error"]
    again = served.run("cancel", run_id)
    assert again.returncode == 1
    assert f"run {run_id} already finished with CANCELED" in again.stderr


def test_rerun_records_its_parent_and_runs(served: Tickd) -> None:
    first = json.loads(served.run("trigger", "quick", "--wait", "--json").stdout)["run"]

    result = served.json("rerun", first["run_id"])

    assert result["created"] is True
    again = result["run"]
    assert again["parent_run_id"] == first["run_id"]
    assert again["attempt"] == 1
    wait_for(lambda: _show(served, again["run_id"])["status"] == "SUCCESS", timeout=10)


def test_backfill_twice_queues_each_partition_once(served: Tickd) -> None:
    first = served.json("backfill", "daily", "--from", "2026-02-01", "--to", "2026-02-04")
    assert first["partitions"] == 4
    assert len(first["created"]) == 4
    assert first["deduplicated"] == []
    for created in first["created"]:
        wait_for(lambda c=created: _show(served, c["run_id"])["status"] == "SUCCESS", timeout=10)

    second = served.json("backfill", "daily", "--from", "2026-02-01", "--to", "2026-02-04")

    assert second["created"] == []
    assert [d["partition_key"] for d in second["deduplicated"]] == [
        "2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04",
    ]  # fmt: skip
    assert {d["by"] for d in second["deduplicated"]} == {"run_key"}
    done = served.run("backfill", "quick", "--from", "a", "--to", "b")
    assert done.returncode == 2


def test_a_run_submitted_through_the_client_starts_within_100ms(served: Tickd) -> None:
    latencies = []
    with Client.open(str(served.store)) as tickd:
        for n in range(10):
            time.sleep(0.013 * n)  # not in step with the daemon's 20 ms store watch
            run = tickd.submit("quick", run_config={"n": n})
            done = tickd.wait(run.run_id, timeout=10, poll=0.02)
            assert done.status is RunStatus.SUCCESS
            assert done.started_at is not None
            latencies.append((done.started_at - done.created_at).total_seconds())
    shown = ", ".join(f"{s * 1000:.0f}" for s in latencies)
    print(
        f"client submit -> run started (started_at - created_at), ms: {shown}; "
        f"median {statistics.median(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f}"
    )
    assert max(latencies) < 1.0


def test_status_is_0_while_serving_and_1_after_a_stop(tmp_path: Path) -> None:
    home = Tickd(tmp_path)
    home.write("jobs.py", JOBS)
    assert home.run("status").returncode == 1  # no store yet
    try:
        home.serve()
        wait_for(lambda: home.run("status").returncode == 0, timeout=20)
        status = home.json("status")
        assert (status["state"], status["healthy"]) == ("live", True)
        assert status["pid"] == home.procs[0].pid
    finally:
        home.stop_all()
    done = home.run("status", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "released"
