"""Playing systemd: the unit file passes systemd's checks, and the daemon speaks
sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) over $NOTIFY_SOCKET."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .support import Tickd, clean_env, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "tickd.service"
analyze = shutil.which("systemd-analyze")


def _unit_copy(tmp_path: Path) -> Path:
    # The unit names /opt/tickd; point it at this checkout's tickd so verify can see it.
    tickd = Path(sys.executable).with_name("tickd")
    text = UNIT.read_text().replace("/opt/tickd/.venv/bin/tickd", str(tickd))
    copy = tmp_path / "tickd.service"
    copy.write_text(text)
    return copy


@pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")
def test_unit_verifies_cleanly_and_scores_at_most_2(tmp_path: Path) -> None:
    unit = _unit_copy(tmp_path)
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout == "" and verify.stderr == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    last = security.stdout.strip().splitlines()[-1]
    score = float(last.split("level for tickd.service:")[1].split()[0])
    assert score <= 2.0, last


def test_unit_has_the_service_manners() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "KillMode=mixed",
        "StateDirectory=tickd",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=90",
    ):
        assert line in text


def _messages(sock: socket.socket, until: str, timeout: float = 20.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m for m in got):
            return got
    raise AssertionError(f"no {until!r} in {got}")


def _frozen(home: Tickd) -> int:
    return sum(1 for e in home.events() if e.get("event") == "daemon.heap_frozen")


def test_the_notify_conversation(tmp_path: Path) -> None:
    home = Tickd(tmp_path)
    home.write("beat.py", (REPO / "definitions" / "heartbeat.py").read_text())
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    try:
        proc = home.serve(env=clean_env(NOTIFY_SOCKET=address, WATCHDOG_USEC="1000000"))
        first = _messages(sock, "READY=1")
        ready = next(m for m in first if "READY=1" in m)
        assert "STATUS=" in ready and "schedules" in ready
        assert any("WATCHDOG=1" in m for m in _messages(sock, "WATCHDOG=1"))
        wait_for(lambda: _frozen(home) == 1)  # long-lived objects out of the GC's walks
        proc.send_signal(signal.SIGHUP)
        reload = _messages(sock, "READY=1")
        reloading = next(m for m in reload if "RELOADING=1" in m)
        assert "MONOTONIC_USEC=" in reloading
        assert reload.index(reloading) < max(i for i, m in enumerate(reload) if "READY=1" in m)
        wait_for(lambda: _frozen(home) == 2)  # and again after the reload
        proc.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in _messages(sock, "STOPPING=1"))
        assert proc.wait(timeout=30) == 0
    finally:
        home.stop_all()
        sock.close()
