"""What the torture suites share: a scratch tickd home whose every process (daemon, warm
workers, job children) carries a marker in its environment so none can outlive a test,
the SIGKILL loop, and the checks of what the store holds afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.support import Tickd, clean_env, wait_for

HERE = Path(__file__).resolve().parent
DEFS_CRASH = HERE / "defs_crash"
DEFS_FAULTS = HERE / "defs_faults"
MARKER = "TICKD_TORTURE_MARKER_ID"  # not TICKD_*: the daemon's config must not see it
STUCK = ("STARTING", "RUNNING", "CANCELING")
CRASH_CONFIG = """\
[dispatch]
max_concurrent_runs = 4
drain_timeout = "10s"
"""


class TortureHome(Tickd):
    """A Tickd home whose processes all carry `MARKER` in their environment."""

    def __init__(self, home: Path, defs: Path, *, seed: int, config: str = CRASH_CONFIG) -> None:
        super().__init__(home)
        for source in sorted(defs.glob("*.py")):
            shutil.copy(source, self.defs / source.name)
        (home / "tickd.toml").write_text(config)  # cwd of every command: read by all
        self.marker = uuid.uuid4().hex
        self.env = clean_env(**{MARKER: self.marker, "TORTURE_SEED": str(seed)})

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return super().run(*args, env=env or self.env)

    def serve(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return super().serve(env=env or self.env)

    def ticks(self, *args: str) -> list[dict[str, Any]]:
        return list(self.json("ticks", *args, "--limit", "100000"))

    def runs(self) -> list[dict[str, Any]]:
        return list(self.json("runs", "--limit", "100000"))

    def log_of(self, index: int) -> str:
        path = self.home / f"serve-{index}.log"
        return path.read_text() if path.exists() else ""

    def cleanup(self, grace: float = 20.0) -> int:
        """Stop the daemons (SIGTERM, then SIGKILL after `grace` seconds), then SIGKILL
        whatever else still carries our marker (a worker or job child left behind).
        Returns that count."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.stop_all()  # closes the logs
        return kill_marked(self.marker)


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes whose environment carries `MARKER=marker`."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str) -> int:
    pids = marked_pids(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def integrity(store: Path) -> str:
    """`PRAGMA integrity_check` on a read-only connection (the daemon has stopped)."""
    conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---- the crash suite ---------------------------------------------------------------------


@dataclass
class CrashFigures:
    seed: int
    kills: int = 0
    kills_during_startup: int = 0  # killed before its daemon.started line
    ticks: int = 0
    schedule_ticks: int = 0
    skipped_ticks: int = 0
    sensor_ticks: int = 0
    runs: int = 0
    duplicates: int = 0  # runs sharing (instigator kind, name, run_key)
    duplicated_seconds: int = 0  # scheduled seconds with more than one tick
    lost_seconds: int = 0  # seconds between the first and last tick with no tick
    bad_ticks: int = 0  # FAILURE, SUCCESS without exactly one run, SKIPPED without reason
    orphan_runs: int = 0  # schedule runs no SUCCESS tick names, or tick run ids not stored
    run_statuses: str = ""  # e.g. SUCCESS:300 FAILURE:12 (runs a crash cut short)
    stuck_runs: int = 0  # STARTING / RUNNING / CANCELING after a clean stop
    not_caught_up: int = 0  # 1 if the last tick is older than the final start
    leftover_processes: int = 0
    integrity: str = "?"
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def rows(self) -> list[tuple[str, str]]:
        skip = ("problems", "wall_s")
        names = [f.name for f in dataclasses.fields(self) if f.name not in skip]
        rows = [(n, str(getattr(self, n))) for n in names]
        rows.append(("wall_s", f"{self.wall_s:.1f}"))
        rows.append(("result", "ok" if self.ok else "FAILED"))
        return rows

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.rows())


def crash_run(
    root: Path, *, kills: int, seed: int, say: Callable[[str], None] = print
) -> CrashFigures:
    """Start `tickd serve` on the crash load, SIGKILL it `kills` times at seeded random
    moments (restarting each time), stop it cleanly, and check the store."""
    rng = random.Random(seed)
    figures = CrashFigures(seed=seed)
    home = TortureHome(root, DEFS_CRASH, seed=seed)
    started = time.monotonic()
    try:
        for i in range(kills):
            proc = home.serve()
            during_startup = rng.random() < 0.15
            time.sleep(rng.uniform(0.0, 0.3) if during_startup else rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            figures.kills += 1
            if '"daemon.started"' not in home.log_of(i):
                figures.kills_during_startup += 1
            if (i + 1) % 25 == 0:
                say(f"  {i + 1}/{kills} kills, {time.monotonic() - started:.0f}s")
        final_start = datetime.now().astimezone()
        home.serve()

        def caught_up() -> bool:
            newest = home.ticks("every_second")[:1]
            return bool(newest) and when(newest[0]["scheduled_for"]) >= final_start + timedelta(
                seconds=2
            )

        wait_for(caught_up, timeout=60, every=0.25)
    finally:
        figures.leftover_processes = home.cleanup()
    figures.wall_s = time.monotonic() - started
    figures.integrity = integrity(home.store)
    check_crash_store(home.ticks(), home.runs(), final_start, figures)
    return figures


def check_crash_store(
    ticks: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    final_start: datetime,
    figures: CrashFigures,
) -> None:
    """Fill in the store figures and list every broken promise in `figures.problems`."""
    figures.ticks = len(ticks)
    figures.runs = len(runs)
    schedule = [t for t in ticks if t["instigator"]["name"] == "every_second"]
    figures.schedule_ticks = len(schedule)
    figures.sensor_ticks = sum(1 for t in ticks if t["instigator"]["kind"] == "sensor")
    figures.skipped_ticks = sum(1 for t in schedule if t["status"] == "SKIPPED")

    keys = Counter(
        (r["instigator"]["kind"], r["instigator"]["name"], r["run_key"])
        for r in runs
        if r["run_key"] is not None
    )
    figures.duplicates = sum(n - 1 for n in keys.values() if n > 1)

    seconds = Counter(when(t["scheduled_for"]) for t in schedule)
    figures.duplicated_seconds = sum(1 for n in seconds.values() if n > 1)
    if seconds:
        first, last = min(seconds), max(seconds)
        span = int((last - first).total_seconds()) + 1
        figures.lost_seconds = sum(
            1 for i in range(span) if first + timedelta(seconds=i) not in seconds
        )
        figures.not_caught_up = int(last < final_start)

    bad = [
        t
        for t in schedule
        if not (
            (t["status"] == "SUCCESS" and len(t["run_ids"]) == 1)
            or (t["status"] == "SKIPPED" and t["skip_reason"])
        )
    ]
    figures.bad_ticks = len(bad)

    run_ids = {r["run_id"] for r in runs}
    named = {rid for t in ticks for rid in t["run_ids"]}
    schedule_runs = {r["run_id"] for r in runs if r["instigator"]["name"] == "every_second"}
    sensor_runs = {r["run_id"] for r in runs if r["instigator"]["name"] == "churn"}
    figures.orphan_runs = len((schedule_runs | sensor_runs) - named) + len(named - run_ids)

    statuses = Counter(r["status"] for r in runs)
    figures.run_statuses = " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    stuck = [r for r in runs if r["status"] in STUCK]
    figures.stuck_runs = len(stuck)

    p = figures.problems
    if not schedule:
        p.append("the schedule never ticked")
    if figures.duplicates:
        dups = [k for k, n in keys.items() if n > 1][:5]
        p.append(f"{figures.duplicates} duplicate runs, e.g. {dups}")
    if figures.duplicated_seconds:
        p.append(f"{figures.duplicated_seconds} seconds ticked more than once")
    if figures.lost_seconds:
        p.append(f"{figures.lost_seconds} seconds without a tick")
    if bad:
        p.append(f"{len(bad)} bad ticks, e.g. {bad[:2]}")
    if figures.orphan_runs:
        p.append(f"{figures.orphan_runs} runs and tick run ids that do not match")
    if stuck:
        p.append(f"{len(stuck)} runs stuck, e.g. {[(r['run_id'], r['status']) for r in stuck[:3]]}")
    if figures.not_caught_up:
        p.append("the schedule did not catch up after the last restart")
    if figures.integrity != "ok":
        p.append(f"integrity_check: {figures.integrity}")
    if figures.leftover_processes:
        p.append(f"{figures.leftover_processes} processes outlived the clean stop")
