"""The real `tickd serve` under load, killed with SIGKILL at random moments and restarted:
no duplicate run, no lost or doubled second, nothing left running, an intact store.

The long form (200 kills) is `make crash-long` (bench/crash_long.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import crash_run

pytestmark = pytest.mark.e2e

KILLS = int(os.environ.get("TORTURE_KILLS", "20"))
SEED = int(os.environ.get("TORTURE_SEED", "20240611"))


@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    print(f"\ncrash suite: seed={SEED} kills={KILLS}")
    figures = crash_run(tmp_path, kills=KILLS, seed=SEED)
    print(f"crash suite: {figures.summary()}")
    assert figures.ok, figures.problems
