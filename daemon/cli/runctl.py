"""`tickd runs [show ID]`, `logs`, `cancel`, `status` and `purge`: watch and steer a store.

JSON shapes (`--json`):
* `runs`: a list of runs; `runs show ID`: the run with `"events": [{seq, at, kind, data}]`;
  `cancel`: the run after the cancel request.
* `logs --json`: one JSON object per line (JSON Lines): {seq, at, stream, text}.
* `status`: {store, state, healthy, holder, epoch, pid, host, since, heartbeat_at,
  expires_at, heartbeat_age_s, lease_ttl_s}; state is live, stale, lapsed, released,
  none (no lease yet) or no_store. Exit 0 only when live.
* `purge`: {ticks, runs, retention: {skipped_ticks, ticks, runs}} (seconds; null: forever).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, Final

import anyio

from daemon.adapters.system_clock import SystemClock

# The argument types `ticks` also uses, shared rather than copied.
from daemon.cli.args import duration, positive
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_command,
    error,
    format_seconds,
    format_table,
    format_time,
    note,
    print_json,
    run_async,
    to_jsonable,
)
from daemon.cli.history import existing_store
from daemon.cli.shapes import iso, run_json
from daemon.client import AsyncClient, RunFinishedError
from daemon.config import Config
from daemon.domain.runs import Run, RunStatus
from daemon.errors import RunNotFoundError, StoreLocationError
from daemon.ports import Lease, LogLine, RunEvent, RunQuery, Store

FOLLOW_POLL_S: Final = 0.5
DEFAULT_LIMIT: Final = 50
CANCEL_REASON: Final = "canceled by an operator (tickd cancel)"

_RUNS_DESCRIPTION = """\
tickd runs [--status S] [--job J] [--tag k=v] [--since 1h] [--limit N]
    list runs, newest first
tickd runs show RUN_ID
    one run with every event it went through
"""


def register(subparsers: Subparsers) -> None:
    runs = add_command(
        subparsers,
        "runs",
        run=run_runs,
        help="list runs, newest first; `runs show ID` for one run and its events",
        description=_RUNS_DESCRIPTION,
    )
    runs.add_argument(
        "action", nargs="?", choices=("list", "show"), help="list (default) or show RUN_ID"
    )
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show")
    runs.add_argument("--status", type=run_status_arg, action="append", help="e.g. QUEUED")
    runs.add_argument("--job", help="only runs of this job")
    runs.add_argument("--tag", type=tag_arg, action="append", help="k=v (repeatable)")
    runs.add_argument("--since", type=duration, help="only runs created this recently, e.g. 2h")
    runs.add_argument("--limit", type=positive, help=f"at most N runs ({DEFAULT_LIMIT})")
    runs.add_argument("--json", action="store_true", help="print JSON")

    logs = add_command(subparsers, "logs", run=run_logs, help="print a run's output")
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the run ends"
    )
    logs.add_argument("--json", action="store_true", help="one JSON object per line")

    cancel = add_command(
        subparsers,
        "cancel",
        run=run_cancel,
        help="cancel a run: a queued one at once, a running one by the daemon executing it",
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--json", action="store_true", help="print the run as JSON")


def register_housekeeping(subparsers: Subparsers) -> None:
    """`status` and `purge`, listed after the commands that queue runs."""
    status = add_command(
        subparsers,
        "status",
        run=run_status,
        help="is a daemon scheduling on this store? exit 0 if its heartbeat is fresh, else 1",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")

    purge = add_command(
        subparsers,
        "purge",
        run=run_purge,
        help="delete ticks and finished runs older than the configured [retention]",
    )
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")


# ---- argument types (argparse turns their errors into exit 2 with the message) -----------


def run_status_arg(value: str) -> RunStatus:
    try:
        return RunStatus(value.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a run status; use one of {', '.join(s.value for s in RunStatus)}"
        ) from None


def tag_arg(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not a tag; write it as key=value")
    return key, val


# ---- runs ---------------------------------------------------------------------------------


def run_runs(args: argparse.Namespace, config: Config) -> int:
    if args.action == "show":
        if args.run_id is None:
            error("runs show needs a RUN_ID; list run ids with `tickd runs`")
            return EXIT_USAGE
        given = [
            flag
            for flag, value in (
                ("--status", args.status),
                ("--job", args.job),
                ("--tag", args.tag),
                ("--since", args.since),
                ("--limit", args.limit),
            )
            if value
        ]
        if given:
            error(f"{', '.join(given)} filter the run list; `runs show RUN_ID` takes only --json")
            return EXIT_USAGE
        return run_async(_show, args, config)
    if args.run_id is not None:
        error(
            f"unexpected argument {args.run_id!r}; to see one run, write `tickd runs show RUN_ID`"
        )
        return EXIT_USAGE
    return run_async(_list, args, config)


async def _list(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    try:
        since = SystemClock().now() - args.since if args.since else None
        runs = await store.list_runs(
            RunQuery(
                statuses=tuple(args.status or ()),
                job=args.job,
                tags=dict(args.tag or ()),
                since=since,
                limit=args.limit or DEFAULT_LIMIT,
            )
        )
    finally:
        await store.close()
    if args.json:
        print_json([run_json(r) for r in runs])
        return EXIT_OK
    rows = [
        (
            r.run_id,
            r.job,
            r.status.value,
            r.priority or None,
            r.partition_key,
            r.instigator.name,
            r.created_at,
            _first_line(r.error),
        )
        for r in runs
    ]
    headers = ("RUN ID", "JOB", "STATUS", "PRIO", "PARTITION", "BY", "CREATED", "ERROR")
    print(format_table(headers, rows))
    return EXIT_OK


async def _show(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    try:
        run = await store.get_run(args.run_id)
        events = await store.run_events(args.run_id) if run is not None else []
    finally:
        await store.close()
    if run is None:
        raise RunNotFoundError(args.run_id)
    if args.json:
        print_json({**run_json(run), "events": [event_json(e) for e in events]})
        return EXIT_OK
    print(_describe(run))
    print()
    rows = [(e.at, e.kind, _event_data(e.data)) for e in events]
    print(format_table(("AT", "EVENT", "DATA"), rows))
    if run.error:
        print(f"\nerror:\n{run.error}")
    return EXIT_OK


def event_json(event: RunEvent) -> dict[str, Any]:
    return {"seq": event.seq, "at": iso(event.at), "kind": event.kind, "data": dict(event.data)}


def _describe(run: Run) -> str:
    took = None
    if run.started_at and run.ended_at:
        took = format_seconds((run.ended_at - run.started_at).total_seconds())
    fields: list[tuple[str, object]] = [
        ("run", run.run_id),
        ("job", run.job),
        ("status", run.status.value),
        ("instigator", str(run.instigator)),
        ("priority", run.priority),
        ("partition", run.partition_key),
        ("run_key", run.run_key),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(run.tags.items()))),
        ("run_config", json.dumps(dict(run.run_config)) if run.run_config else None),
        ("attempt", run.attempt),
        ("parent", run.parent_run_id),
        ("tick", run.tick_id),
        ("created", run.created_at),
        ("started", run.started_at),
        ("ended", run.ended_at),
        ("took", took),
        ("node", run.node_id),
    ]
    return _key_values(fields)


def _event_data(data: Any) -> str | None:
    return json.dumps(to_jsonable(data), ensure_ascii=False) if data else None


def _first_line(text: str | None) -> str | None:
    return text.splitlines()[0] if text else None


# ---- logs ---------------------------------------------------------------------------------


def run_logs(args: argparse.Namespace, config: Config) -> int:
    return run_async(_logs, args, config)


async def _logs(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    try:
        run = await store.get_run(args.run_id)
        if run is None:
            raise RunNotFoundError(args.run_id)
        seq = 0
        while True:
            # The status is read before the lines: once it was final, no line is missed.
            finished = run.status.is_terminal
            for line in await store.read_logs(args.run_id, after_seq=seq):
                _print_line(line, as_json=args.json)
                seq = line.seq
            sys.stdout.flush()
            if not args.follow or finished:
                return EXIT_OK
            await anyio.sleep(FOLLOW_POLL_S)
            current = await store.get_run(args.run_id)
            if current is None:  # purged while we watched
                note(f"run {args.run_id} was purged from the store")
                return EXIT_OK
            run = current
    finally:
        await store.close()


def _print_line(line: LogLine, *, as_json: bool) -> None:
    if as_json:
        record = {"seq": line.seq, "at": iso(line.at), "stream": line.stream, "text": line.text}
        print(json.dumps(record, ensure_ascii=False))
    else:
        at = line.at.astimezone(UTC).isoformat(timespec="milliseconds")
        print(f"{at} {line.stream} {line.text.rstrip(chr(10))}")


# ---- cancel -------------------------------------------------------------------------------


def run_cancel(args: argparse.Namespace, config: Config) -> int:
    return run_async(_cancel, args, config)


async def _cancel(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    client = AsyncClient(store, close_store=False)
    try:
        before = await store.get_run(args.run_id)
        try:
            run = await client.cancel(args.run_id, reason=CANCEL_REASON)
        except RunFinishedError as exc:
            error(f"{exc}; nothing to cancel")
            return EXIT_FAILURE
        daemon_live = live_lease(await store.current_lease(), SystemClock().now()) is not None
    finally:
        await store.close()
    was = before.status.value if before is not None else "?"
    if run.status is RunStatus.CANCELED:
        note(f"run {run.run_id} ({run.job}) canceled; it was {was}")
    elif daemon_live:
        note(
            f"run {run.run_id} ({run.job}) is CANCELING; the daemon executing it stops it and "
            "marks it CANCELED (watch with `tickd runs show ID`)"
        )
    else:
        note(
            f"run {run.run_id} ({run.job}) is CANCELING, but no daemon is running on this "
            "store; it is marked CANCELED when `tickd serve` next starts"
        )
    if args.json:
        print_json(run_json(run))
    return EXIT_OK


# ---- status -------------------------------------------------------------------------------


def live_lease(lease: Lease | None, now: datetime) -> Lease | None:
    """The lease if a daemon holds it now (not released, not lapsed)."""
    if lease is None or lease.expires_at <= lease.since or lease.expires_at <= now:
        return None
    return lease


def lease_state(lease: Lease | None, *, now: datetime, ttl: float) -> str:
    """live, stale (heartbeat older than ttl), lapsed, released, or none."""
    if lease is None:
        return "none"
    if lease.expires_at <= lease.since:
        return "released"  # a clean stop gives the lease up this way
    if lease.expires_at <= now:
        return "lapsed"
    if (now - lease.heartbeat_at).total_seconds() > ttl:
        return "stale"
    return "live"


def run_status(args: argparse.Namespace, config: Config) -> int:
    return run_async(_status, args, config)


async def _status(args: argparse.Namespace, config: Config) -> int:
    ttl = config.scheduler.lease_ttl
    try:
        store: Store | None = await existing_store(config)
    except StoreLocationError as exc:
        note(str(exc))
        store = None
    lease: Lease | None = None
    if store is not None:
        try:
            lease = await store.current_lease()
        finally:
            await store.close()
    now = SystemClock().now()
    state = "no_store" if store is None else lease_state(lease, now=now, ttl=ttl)
    healthy = state == "live"
    age = (now - lease.heartbeat_at).total_seconds() if lease is not None else None
    if args.json:
        print_json(
            {
                "store": config.store,
                "state": state,
                "healthy": healthy,
                "holder": lease.holder if lease else None,
                "epoch": lease.epoch if lease else None,
                "pid": lease.pid if lease else None,
                "host": lease.host if lease else None,
                "since": iso(lease.since) if lease else None,
                "heartbeat_at": iso(lease.heartbeat_at) if lease else None,
                "expires_at": iso(lease.expires_at) if lease else None,
                "heartbeat_age_s": None if age is None else round(age, 3),
                "lease_ttl_s": ttl,
            }
        )
    else:
        print(_status_text(config.store, state, lease, now, ttl))
    return EXIT_OK if healthy else EXIT_FAILURE


_STATE_WORDS: Final = {
    "live": "running",
    "stale": "STALE: the heartbeat is older than the lease ttl; the daemon may be hung",
    "lapsed": "not running: its lease lapsed without a clean stop (killed or crashed?)",
    "released": "not running: it stopped cleanly",
    "none": "not running: no daemon has ever scheduled on this store",
    "no_store": "not running: there is no store yet",
}


def _status_text(store: str, state: str, lease: Lease | None, now: datetime, ttl: float) -> str:
    rows: list[tuple[str, object]] = [("daemon", _STATE_WORDS[state]), ("store", store)]
    if lease is not None:
        up = format_seconds((now - lease.since).total_seconds())
        age = format_seconds(max(0.0, (now - lease.heartbeat_at).total_seconds()))
        rows += [
            ("holder", f"{lease.holder} (pid {lease.pid} on {lease.host}, epoch {lease.epoch})"),
            ("since", f"{format_time(lease.since)} ({up} ago)"),
            (
                "heartbeat",
                f"{format_time(lease.heartbeat_at)} ({age} ago; stale after {format_seconds(ttl)})",
            ),
        ]
    return _key_values(rows)


def _key_values(rows: list[tuple[str, object]]) -> str:
    """`name  value` lines, aligned, values shown as format_table shows cells."""
    return format_table(("", ""), rows).split("\n", 1)[1]  # the table without its header


# ---- purge --------------------------------------------------------------------------------


def run_purge(args: argparse.Namespace, config: Config) -> int:
    return run_async(_purge, args, config)


async def _purge(args: argparse.Namespace, config: Config) -> int:
    retention = config.retention
    store = await existing_store(config)
    try:
        counts = await store.purge(now=SystemClock().now(), retention=retention)
    finally:
        await store.close()
    kept = {
        "skipped_ticks": retention.skipped_ticks,
        "ticks": retention.ticks,
        "runs": retention.runs,
    }
    if args.json:
        print_json({"ticks": counts.ticks, "runs": counts.runs, "retention": kept})
        return EXIT_OK

    def period(value: Any) -> str:
        return "forever" if value is None else format_seconds(value.total_seconds())

    print(
        f"purged {counts.ticks} ticks and {counts.runs} finished runs "
        f"(kept: skipped ticks {period(kept['skipped_ticks'])}, ticks {period(kept['ticks'])}, "
        f"runs {period(kept['runs'])})"
    )
    return EXIT_OK
