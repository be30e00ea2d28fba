"""Running the real `tickd` in subprocesses, as an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKD_")}
    env.pop("STATE_DIRECTORY", None)
    env.pop("NOTIFY_SOCKET", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Tickd:
    """A scratch tickd home: definitions dir, store, and helpers to run commands."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.defs = home / "definitions"
        self.defs.mkdir(parents=True, exist_ok=True)
        self.store = home / "var" / "tickd.db"
        self.procs: list[subprocess.Popen[str]] = []
        self._logs: list[Any] = []

    def write(self, name: str, source: str) -> None:
        (self.defs / name).write_text(source)

    def base_args(self) -> list[str]:
        return ["--store", str(self.store), "--definitions", str(self.defs)]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args, *self.base_args()],
            cwd=self.home,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def serve(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.home / f"serve-{len(self.procs)}.log", "w")  # noqa: SIM115
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "serve", *self.base_args()],
            cwd=self.home,
            env=env or clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.home.glob("serve-*.log")))

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (AssertionError, ValueError):  # not up yet: no store, no output
            pass
        time.sleep(every)
    raise AssertionError("condition not met in time")
