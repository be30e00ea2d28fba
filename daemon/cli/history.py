"""`tickd ticks`: what the daemon decided (`tickd runs` is in runctl.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from daemon.adapters.system_clock import SystemClock
from daemon.cli.args import duration, positive, tick_status
from daemon.cli.common import (
    EXIT_OK,
    Subparsers,
    add_command,
    format_table,
    print_json,
    run_async,
)
from daemon.cli.shapes import tick_json
from daemon.config import Config
from daemon.errors import StoreLocationError
from daemon.ports import Store, TickQuery


def register(subparsers: Subparsers) -> None:
    ticks = add_command(subparsers, "ticks", run=run_ticks, help="list recent ticks, newest first")
    ticks.add_argument("name", nargs="?", help="only this schedule or sensor")
    ticks.add_argument(
        "--status", type=tick_status, action="append", help="SUCCESS, SKIPPED, FAILURE"
    )
    ticks.add_argument("--since", type=duration, help="only ticks this recent, e.g. 2h, 30m")
    ticks.add_argument("--limit", type=positive, default=50, help="at most N ticks (50)")
    ticks.add_argument("--json", action="store_true", help="print a JSON list")


async def existing_store(config: Config) -> Store:
    """Open the configured store for reading commands: a missing file is an error here,
    not a new empty store."""
    if "://" not in config.store and config.store != ":memory:":
        path = Path(config.store)
        if not await anyio.Path(path).exists():
            raise StoreLocationError(
                config.store, "no store there yet; start `tickd serve` or pass --store"
            )
    from daemon.adapters.open_store import open_store

    return await open_store(config.store)


def run_ticks(args: argparse.Namespace, config: Config) -> int:
    return run_async(_ticks, args, config)


async def _ticks(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    try:
        since = SystemClock().now() - args.since if args.since else None
        ticks = await store.list_ticks(
            TickQuery(
                instigator_name=args.name,
                statuses=tuple(args.status or ()),
                since=since,
                limit=args.limit,
            )
        )
    finally:
        await store.close()
    if args.json:
        print_json([tick_json(t) for t in ticks])
        return EXIT_OK
    rows = [
        (
            t.instigator.name,
            t.scheduled_for or t.started_at,
            t.status.value,
            ", ".join(t.run_ids[:3]) + (" …" if len(t.run_ids) > 3 else ""),
            len(t.deduplicated) or None,
            (
                t.skip_reason or (t.error or "").splitlines()[0]
                if (t.skip_reason or t.error)
                else None
            ),
        )
        for t in ticks
    ]
    print(format_table(("NAME", "TICK", "STATUS", "RUNS", "DEDUP", "REASON"), rows))
    return EXIT_OK
