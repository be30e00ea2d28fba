"""The real daemon: one tick per second, SIGKILL, restart, catch-up, no duplicate."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .support import Tickd, wait_for

pytestmark = pytest.mark.e2e

EVERY_SECOND = """
from daemon import Schedule, job

@job(executor="thread")
def beat(context):
    context.log.info("beat.done", partition=context.partition_key)

every_second = Schedule(name="every_second", cron="* * * * * *", job=beat, catchup="all",
                        max_catchup=1000)
"""


def _seconds(ticks: list[dict]) -> list[datetime]:
    return sorted(datetime.fromisoformat(t["scheduled_for"]) for t in ticks)


def test_one_run_per_second_through_a_sigkill(tmp_path: Path) -> None:
    home = Tickd(tmp_path)
    home.write("every_second.py", EVERY_SECOND)
    try:
        first = home.serve()
        wait_for(lambda: len(home.json("ticks", "--limit", "1000")) >= 3)
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(1.5)  # downtime: these seconds must be caught up
        home.serve()
        wait_for(
            lambda: (
                any(e.get("event") == "daemon.started" for e in home.events()[1:])
                and len(home.json("ticks", "--limit", "1000")) >= 8
            )
        )
    finally:
        home.stop_all()
    ticks = home.json("ticks", "--limit", "1000")
    runs = home.json("runs", "--limit", "1000")
    seconds = _seconds(ticks)
    # every second between the first and last tick, exactly once
    assert seconds == [seconds[0] + timedelta(seconds=i) for i in range(len(seconds))]
    assert all(t["status"] == "SUCCESS" for t in ticks), [
        t for t in ticks if t["status"] != "SUCCESS"
    ]
    keys = [r["run_key"] for r in runs]
    assert len(keys) == len(set(keys)) == len(seconds)
    # the drain on SIGTERM leaves nothing running
    assert not [r for r in runs if r["status"] in ("STARTING", "RUNNING", "CANCELING")]


def test_second_daemon_refuses_and_names_the_holder(tmp_path: Path) -> None:
    home = Tickd(tmp_path)
    home.write("every_second.py", EVERY_SECOND)
    try:
        home.serve()
        wait_for(lambda: any(e.get("event") == "daemon.started" for e in home.events()))
        home.serve()
        wait_for(lambda: any(e.get("event") == "lease.held" for e in home.events()))
        held = next(e for e in home.events() if e.get("event") == "lease.held")
        assert f"pid {home.procs[0].pid}" in held["holder"]
    finally:
        home.stop_all()
