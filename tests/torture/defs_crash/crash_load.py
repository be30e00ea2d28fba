"""Load for the crash suite: a one-second schedule with full catch-up, a sensor that asks
for a new run_key every evaluation (plus old ones, which must be deduplicated), and
process-executor jobs of seeded random length (0-300 ms)."""

from __future__ import annotations

import os
import random
import time

from daemon import RunRequest, Schedule, SensorResult, job, sensor

SEED = os.environ.get("TORTURE_SEED", "0")


@job
def work(context):  # type: ignore[no-untyped-def]
    rng = random.Random(f"{SEED}:{context.run_id}")
    time.sleep(rng.uniform(0.0, 0.3))


every_second = Schedule(
    name="every_second", cron="* * * * * *", job=work, catchup="all", max_catchup=10000
)


@sensor(job=work, minimum_interval=1)
def churn(context):  # type: ignore[no-untyped-def]
    second = int(context.evaluated_at.timestamp())
    # New: this evaluation's second. Old: the previous few seconds (already requested by
    # earlier evaluations, or not, after a crash) and one key that never changes.
    keys = [f"s-{second - back}" for back in (3, 2, 1, 0)] + ["genesis"]
    return SensorResult(run_requests=[RunRequest(run_key=k) for k in keys], cursor=str(second))
