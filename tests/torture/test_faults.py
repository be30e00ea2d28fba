"""The real daemon beside broken definitions (an import error; sensors that raise, hang and
answer garbage; jobs that raise, hang, exit, segfault and eat memory) and on a full disk:
each failure costs its own tick or run, is recorded with a reason a user understands, and
the daemon and its healthy schedule carry on."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import wait_for

from .harness import DEFS_FAULTS, HERE, STUCK, TortureHome, integrity, when

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("TORTURE_SEED", "20240611"))
RUN_FOR_S = 8.0
MAX_LAG_S = 2.0
FAULT_CONFIG = """\
[dispatch]
max_concurrent_runs = 8
drain_timeout = "5s"
"""

# job -> (status, phrase its error must contain)
BAD_JOBS = {
    "raising_job": ("FAILURE", "raised"),
    "hanging_job": ("TIMED_OUT", "timeout"),
    "exiting_job": ("FAILURE", "exited with code 3"),
    "segfaulting_job": ("FAILURE", "SIGSEGV"),
    "memory_hog_job": ("FAILURE", "MemoryError|signal"),
}
# sensor -> phrase its FAILURE ticks' error must contain
BAD_SENSORS = {
    "raising_sensor": "raised",
    "hanging_sensor": "timed out",
    "garbage_sensor": "returned int",
}


def _healthy_seconds(ticks: list[dict[str, Any]], name: str) -> list[datetime]:
    return sorted(when(t["scheduled_for"]) for t in ticks if t["instigator"]["name"] == name)


def _assert_every_second(seconds: list[datetime]) -> None:
    assert seconds, "the schedule never ticked"
    expected = [seconds[0] + timedelta(seconds=i) for i in range(len(seconds))]
    missing = sorted(set(expected) - set(seconds))
    assert seconds == expected, f"missing or doubled seconds; missing: {missing[:5]}"


def test_broken_definitions_cost_only_their_own_ticks_and_runs(tmp_path: Path) -> None:
    print(f"\nfault suite: seed={SEED}")
    home = TortureHome(tmp_path, DEFS_FAULTS, seed=SEED, config=FAULT_CONFIG)
    try:
        daemon = home.serve()
        wait_for(lambda: '"daemon.started"' in home.log_of(0), timeout=30)
        began = time.monotonic()
        triggered: dict[str, str] = {}
        for job in BAD_JOBS:
            done = home.run("trigger", job, "--json")
            assert done.returncode == 0, done.stderr
            triggered[job] = json.loads(done.stdout)["run"]["run_id"]
        time.sleep(max(0.0, RUN_FOR_S - (time.monotonic() - began)))
        assert daemon.poll() is None, "the daemon died"
        status = home.run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        ticks = home.ticks()
        runs = {r["run_id"]: r for r in home.runs()}
    finally:
        # The hanging sensor's thread keeps a stopped daemon from exiting (see
        # test_a_hung_sync_sensor_does_not_keep_the_daemon_from_exiting): do not wait.
        leftovers = home.cleanup(grace=3)
    events = home.events()

    # the import failure: logged, naming the file; the other modules loaded
    failed = [e for e in events if e.get("event") == "definitions.load_failed"]
    assert any("broken_import.py" in str(e.get("file")) for e in failed), failed

    # the healthy schedule: every second, on time
    healthy = [t for t in ticks if t["instigator"]["name"] == "healthy"]
    _assert_every_second(_healthy_seconds(ticks, "healthy"))
    lags = [(when(t["started_at"]) - when(t["scheduled_for"])).total_seconds() for t in healthy]
    print(f"fault suite: healthy ticks={len(healthy)} max lag={max(lags):.3f}s")
    assert max(lags) < MAX_LAG_S, lags
    assert all(t["status"] == "SUCCESS" for t in healthy), healthy

    # each bad sensor: FAILURE ticks whose error says what went wrong
    for name, phrase in BAD_SENSORS.items():
        mine = [t for t in ticks if t["instigator"]["name"] == name]
        assert mine, f"sensor {name} never ticked"
        assert all(t["status"] == "FAILURE" for t in mine), mine
        assert all(phrase in (t["error"] or "") for t in mine), (name, mine[0]["error"])
        print(f"fault suite: {name}: {len(mine)} FAILURE ticks: {mine[0]['error'].splitlines()[0]}")

    # each bad job: its run ended with the status and reason expected
    for job, (status, phrase) in BAD_JOBS.items():
        run = runs[triggered[job]]
        print(f"fault suite: {job}: {run['status']}: {run['error']}")
        assert run["status"] == status, run
        assert run["error"] and any(p in run["error"] for p in phrase.split("|")), run
    assert not [r for r in runs.values() if r["status"] in STUCK]
    assert leftovers == 0, f"{leftovers} processes outlived the daemon's clean stop"


def test_a_hung_sync_sensor_does_not_keep_the_daemon_from_exiting(tmp_path: Path) -> None:
    home = TortureHome(tmp_path, HERE / "defs_hang", seed=SEED, config=FAULT_CONFIG)
    try:
        daemon = home.serve()
        wait_for(lambda: '"sensor.abandoned"' in home.log_of(0), timeout=30)
        daemon.send_signal(signal.SIGTERM)
        wait_for(lambda: '"daemon.stopped"' in home.log_of(0), timeout=30)
        # Stopped, by its own word: nothing is left to wait for. 6 s is generous.
        try:
            code: int | None = daemon.wait(timeout=6)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, "the daemon logged daemon.stopped but its process did not exit"
    finally:
        home.cleanup(grace=1)


# ---- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, or a skip where this machine does not let us mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full-disk test needs a small filesystem: mounting tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16M,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({done.stderr.strip()}); the full-disk test needs one"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> int:
    """Write `path` until the filesystem is full; the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):  # the last scraps
            while True:
                try:
                    written += f.write(b"\0" * size) or 0
                except OSError:
                    break
    return written


def test_a_full_disk_costs_time_not_ticks(tmp_path: Path, small_disk: Path) -> None:
    home = TortureHome(tmp_path / "home", HERE / "defs_disk", seed=SEED, config=FAULT_CONFIG)
    home.store = small_disk / "tickd.db"
    filler = small_disk / "filler"
    try:
        daemon = home.serve()
        wait_for(lambda: len(home.ticks("steady")) >= 2, timeout=30)
        filled = _fill(filler)
        full_at = datetime.now().astimezone()
        print(f"\nfull disk: filled {filled} bytes at {full_at.isoformat()}")
        wait_for(
            lambda: any(e.get("event") == "tick.commit_failed" for e in home.events()),
            timeout=30,
        )
        failures = [e for e in home.events() if e.get("event") == "tick.commit_failed"]
        print(f"full disk: commit failed: {failures[0].get('error')}")
        time.sleep(6)  # at least one retry (every 5 s) against the full disk
        assert daemon.poll() is None, "the daemon died on a full disk"
        filler.unlink()
        freed_at = datetime.now().astimezone()

        def resumed() -> bool:
            newest = home.ticks("steady")[:1]
            return bool(newest) and when(newest[0]["scheduled_for"]) >= freed_at + timedelta(
                seconds=2
            )

        wait_for(resumed, timeout=30, every=0.25)
        assert daemon.poll() is None
        status = home.run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        leftovers = home.cleanup()
    ticks = home.ticks("steady")
    runs = home.runs()
    failures = [e for e in home.events() if e.get("event") == "tick.commit_failed"]
    seconds = _healthy_seconds(ticks, "steady")
    print(
        f"full disk: commit failures={len(failures)} ticks={len(ticks)} runs={len(runs)} "
        f"span={seconds[0].isoformat()}..{seconds[-1].isoformat()}"
    )
    assert all("full" in str(e.get("error", "")).lower() for e in failures), failures
    _assert_every_second(seconds)
    bad = [
        t
        for t in ticks
        if not (
            (t["status"] == "SUCCESS" and len(t["run_ids"]) == 1)
            or (t["status"] == "SKIPPED" and t["skip_reason"])
        )
    ]
    assert not bad, bad[:3]
    assert seconds[0] < full_at and seconds[-1] > freed_at
    keys = [r["run_key"] for r in runs]
    assert len(keys) == len(set(keys))
    assert not [r for r in runs if r["status"] in STUCK]
    assert integrity(home.store) == "ok"
    assert leftovers == 0
