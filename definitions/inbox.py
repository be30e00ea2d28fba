"""A sensor that watches a spool directory and ingests each new file once.

Drop a file into ./var/inbox (write it under a name starting with "." and rename it when
complete: dot-files are ignored). Within 10 seconds `inbox` requests one `ingest` run per
new file. The cursor is the newest modification time seen (in nanoseconds), so old
files are not rescanned; the run key is "<name>:<mtime_ns>", so a file is ingested at most
once, and again only if it is rewritten. A file moved in with `mv` keeps its old
modification time; `touch` it after moving so the sensor sees it.
"""

import os
from pathlib import Path

from daemon import RunRequest, SensorResult, SkipReason, job, sensor

INBOX = Path("var/inbox")  # relative to the daemon's working directory


@job
def ingest(context):
    """Read one file from the inbox and log what it holds."""
    path = Path(context.run_config["path"])
    data = path.read_bytes()
    lines = data.count(b"\n")
    context.log.info("inbox.ingested", path=str(path), size=len(data), lines=lines)


@sensor(job=ingest, minimum_interval=10)
def inbox(context):
    """One ingest run per file that appeared in var/inbox since the last look."""
    INBOX.mkdir(parents=True, exist_ok=True)
    seen_up_to = int(context.cursor) if context.cursor else 0
    new = []
    with os.scandir(INBOX) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            mtime_ns = entry.stat().st_mtime_ns
            if mtime_ns > seen_up_to:
                new.append((mtime_ns, entry.name))
    if not new:
        return SkipReason(f"no new files in ./{INBOX}")
    new.sort()  # oldest first, so runs queue in arrival order
    requests = [
        RunRequest(run_key=f"{name}:{mtime_ns}", run_config={"path": str(INBOX / name)})
        for mtime_ns, name in new
    ]
    return SensorResult(run_requests=requests, cursor=str(new[-1][0]))
