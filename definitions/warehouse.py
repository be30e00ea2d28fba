"""A warehouse refresh every 15 minutes, under a concurrency limit.

The job is tagged db=warehouse; deploy/tickd.toml limits runs holding that tag to 2 at a
time, whatever starts them (this schedule, manual triggers, backfills), so the database
is never hit by more than two refreshes at once. Priority 5 puts its runs ahead of
priority-0 runs waiting in the queue. The "warehouse" here is a local SQLite file,
./var/warehouse.db, so the example runs anywhere.
"""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from daemon import Schedule, job

WAREHOUSE = Path("var/warehouse.db")  # relative to the daemon's working directory


@job(tags={"db": "warehouse"}, priority=5, timeout=600, max_retries=1)
def refresh_warehouse(context):
    """Rebuild a small summary table and record when it was refreshed."""
    WAREHOUSE.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(WAREHOUSE, timeout=30) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS refreshes (run_id TEXT PRIMARY KEY, refreshed_at TEXT)"
        )
        db.execute(
            "INSERT OR REPLACE INTO refreshes VALUES (?, ?)",
            (context.run_id, datetime.now(UTC).isoformat()),
        )
        (count,) = db.execute("SELECT count(*) FROM refreshes").fetchone()
    db.close()
    context.log.info("warehouse.refreshed", refreshes=count)


# overlap="skip": if a refresh is still running when the next one is due, skip that tick.
every_15_minutes = Schedule(
    name="refresh_warehouse_every_15_minutes",
    cron="*/15 * * * *",
    job=refresh_warehouse,
    overlap="skip",
)
