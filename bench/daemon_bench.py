"""Benchmarks of the real `tickd serve` process.

W4 idle: 1,000 hourly schedules, none due while measured: CPU share and RSS of the
   daemon process over a quiet stretch. Targets ≤ 0.1 % CPU, ≤ 45 MB RSS.
W5 cold start: 1,000 schedules, from process start to the scheduler's first loop
   iteration (its `scheduler.started` event). Target ≤ 1 s.
Trigger to start: a run submitted through the Python client (another process, the
   store API) while the daemon idles with a slot free, from its enqueue to its start
   (`started_at - created_at`). Target ≤ 100 ms.

The definitions use the thread executor so the figures are the daemon's own (the process
executor adds warm worker processes, each with its own interpreter; see W3).

Run: .venv/bin/python -m bench.daemon_bench [--idle-seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Figure, print_table, summarise

CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_definitions(directory: Path, n: int) -> None:
    minute = (datetime.now(UTC).minute + 30) % 60  # half an hour away: never due here
    lines = [
        "from daemon import Schedule, job",
        "",
        "@job(executor='thread')",
        "def noop(context):",
        "    pass",
        "",
        f"for i in range({n}):",
        f"    globals()[f's{{i:04}}'] = Schedule(name=f's{{i:04}}', cron='{minute} * * * *',",
        "                                       job=noop)",
    ]
    (directory / "many.py").write_text("\n".join(lines) + "\n")


def start(home: Path) -> tuple[subprocess.Popen[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKD_")}
    env.pop("NOTIFY_SOCKET", None)
    env["TICKD_LOG_FORMAT"] = "json"
    (home / "tickd.toml").write_text('[dispatch]\ndefault_executor = "thread"\n')
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon",
            "serve",
            "--store",
            str(home / "tickd.db"),
            "--definitions",
            str(home / "defs"),
            "--config",
            str(home / "tickd.toml"),
        ],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, t0


def wait_for_event(proc: subprocess.Popen[str], event: str, timeout: float = 30) -> float:
    assert proc.stdout is not None
    deadline = time.perf_counter() + timeout
    for line in proc.stdout:
        try:
            if json.loads(line).get("event") == event:
                return time.perf_counter()
        except ValueError:
            pass
        if time.perf_counter() > deadline:
            break
    raise RuntimeError(f"no {event} from tickd serve")


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, to the nanosecond where the kernel keeps
    schedstat (utime + stime count whole clock ticks: 10 ms, 0.1 % of a 10 s stretch)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(idle_seconds: float, repeats: int, n: int) -> list[Figure]:
    starts, cpus, rsss, waits = [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            (home / "defs").mkdir()
            write_definitions(home / "defs", n)
            proc, t0 = start(home)
            try:
                started = wait_for_event(proc, "scheduler.started")
                starts.append(started - t0)
                # drain its output in the background so it never blocks on a full pipe
                import threading

                assert proc.stdout is not None
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                time.sleep(2)  # settle: imports done, first heartbeat
                c0, w0 = cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(idle_seconds)
                c1, w1 = cpu_seconds(proc.pid), time.perf_counter()
                cpus.append(100 * (c1 - c0) / (w1 - w0))
                rsss.append(rss_mb(proc.pid))
                waits += trigger_waits(home / "tickd.db", TRIGGERS)
            finally:
                stop(proc)
    return [
        summarise(f"W5 cold start, {n:,} schedules", [1000 * s for s in starts], "ms", "≤ 1000 ms"),
        summarise(f"W4 idle CPU, {n:,} hourly schedules", cpus, "%", "≤ 0.1 %"),
        summarise(f"W4 idle RSS, {n:,} hourly schedules", rsss, "MB", "≤ 45 MB"),
        summarise(
            "trigger to start, idle daemon (median)",
            [1000 * statistics.median(waits)],
            "ms",
            "≤ 100 ms",
        ),
        summarise("trigger to start, idle daemon (slowest)", [1000 * max(waits)], "ms", ""),
    ]


TRIGGERS = 5  # runs submitted one after another per daemon, each after a pause


def trigger_waits(store: Path, count: int) -> list[float]:
    """Seconds from enqueue to start of `count` runs submitted by a client in this process
    to the idle daemon, one at a time, half a second apart (the daemon idles between)."""
    from daemon.client import Client

    waits = []
    with Client.open(str(store)) as tickd:
        for _ in range(count):
            time.sleep(0.5)
            run = tickd.wait(tickd.submit("noop").run_id, timeout=30, poll=0.02)
            assert run.started_at is not None, run
            waits.append((run.started_at - run.created_at).total_seconds())
    return waits


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--schedules", type=int, default=1000)
    args = parser.parse_args()
    print_table("the daemon process", main(args.idle_seconds, args.repeats, args.schedules))
