"""`tickd serve`: run the daemon in the foreground (systemd runs it this way)."""

from __future__ import annotations

import argparse
import sys

from daemon.cli.common import EXIT_OK, Subparsers, add_command, run_async
from daemon.config import Config
from daemon.logging import configure_logging


def register(subparsers: Subparsers) -> None:
    add_command(
        subparsers,
        "serve",
        run=run,
        help="run the scheduler, sensors and dispatcher until SIGTERM (SIGHUP reloads)",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    # The daemon's events are its output: JSON lines on stdout off a terminal (journald).
    configure_logging(config.log.level, config.log.format, stream=sys.stdout)
    return run_async(_serve, config)


async def _serve(config: Config) -> int:
    from daemon.adapters.open_store import open_store
    from daemon.adapters.system_clock import SystemClock
    from daemon.service import Daemon

    store = await open_store(config.store)
    try:
        await Daemon(config, store=store, clock=SystemClock()).run()
    finally:
        await store.close()
    return EXIT_OK
