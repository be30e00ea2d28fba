"""`tickd why NAME [--at TIME]` and `tickd simulate`: the decisions, explained."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, timedelta

from daemon.adapters.system_clock import SystemClock
from daemon.cli.args import parse_time, parse_window
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_command,
    error,
    format_table,
    print_json,
    run_async,
)
from daemon.cli.history import existing_store
from daemon.cli.shapes import iso, run_json, tick_json
from daemon.config import Config
from daemon.domain.runs import InstigatorKind
from daemon.explain import Explanation, explain
from daemon.loading import load_definitions
from daemon.ports import TickQuery


def register(subparsers: Subparsers) -> None:
    why = add_command(
        subparsers,
        "why",
        run=run_why,
        help="what each tick of a schedule or sensor around a time decided, and why",
    )
    why.add_argument("name", help="the schedule or sensor")
    why.add_argument("--at", default="now", help="the time to look around (ISO-8601 or now-2h)")
    why.add_argument(
        "--window",
        type=parse_window,
        default=None,
        help="how far either side of --at to look (default: 3 ticks' worth)",
    )
    why.add_argument("--json", action="store_true", help="print one JSON object")

    sim = add_command(
        subparsers,
        "simulate",
        run=run_simulate,
        help="run the real evaluator on a virtual clock and a scratch store; print what happens",
    )
    sim.add_argument("--from", dest="start", default="now", help="start (default now)")
    sim.add_argument("--to", dest="end", default=None, help="end (default: start + 1 day)")
    sim.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="T1/T2",
        help="the daemon is down from T1 to T2 (repeatable)",
    )
    sim.add_argument("--name", action="append", default=[], help="only these instigators")
    sim.add_argument("--json", action="store_true", help="print {ticks, runs} as JSON")


def run_why(args: argparse.Namespace, config: Config) -> int:
    return run_async(_why, args, config)


async def _why(args: argparse.Namespace, config: Config) -> int:
    now = SystemClock().now()
    try:
        at = parse_time(args.at, now=now)
    except argparse.ArgumentTypeError as exc:
        error(f"--at: {exc}")
        return 2
    with contextlib.redirect_stdout(sys.stderr):
        registry = load_definitions(config.definitions).registry
    definition = registry.instigators.get(args.name)
    window = args.window or _default_window(definition)
    store = await existing_store(config)
    try:
        ticks = await store.list_ticks(TickQuery(instigator_name=args.name, around=at, limit=200))
        ticks = [t for t in ticks if abs((t.scheduled_for or t.started_at) - at) <= window]
        run_ids = {d.run_id for t in ticks for d in t.decisions}
        runs = {rid: run for rid in run_ids if (run := await store.get_run(rid)) is not None}
        states = await store.instigator_states()
    finally:
        await store.close()
    kind = InstigatorKind.SCHEDULE if args.name in registry.schedules else InstigatorKind.SENSOR
    if definition is None and not ticks:
        error(
            f"no schedule or sensor named {args.name!r}, and no ticks recorded for it; "
            "list them with `tickd check`"
        )
        return EXIT_FAILURE
    result = explain(
        name=args.name,
        definition=definition,
        state=states.get((kind, args.name)),
        ticks=ticks,
        runs=runs,
        around=at,
        window=window,
    )
    if args.json:
        print_json(_explanation_json(result))
    else:
        _print_explanation(result)
    return EXIT_OK


def _default_window(definition: object) -> timedelta:
    from daemon.definitions import Schedule, Sensor
    from daemon.ticking import fire_times

    if isinstance(definition, Sensor):
        return timedelta(seconds=definition.minimum_interval * 3)
    if isinstance(definition, Schedule):
        now = SystemClock().now()
        times = list(fire_times(definition, now, now + timedelta(days=400)))[:4]
        if len(times) >= 2:
            return min(timedelta(days=31), (times[-1] - times[0]) * 3 / max(1, len(times) - 1))
    return timedelta(hours=1)


def _explanation_json(e: Explanation) -> dict[str, object]:
    return {
        "name": e.name,
        "kind": e.kind,
        "around": iso(e.around),
        "status": e.status,
        "notes": list(e.notes),
        "ticks": [
            {
                "at": iso(line.at),
                "verdict": line.verdict,
                "reason": line.reason,
                "tick_id": line.tick_id,
                "runs": list(line.runs),
            }
            for line in e.lines
        ],
    }


def _print_explanation(e: Explanation) -> None:
    print(f"{e.kind} {e.name}: {e.status}; ticks around {e.around.astimezone(UTC).isoformat()}")
    for note in e.notes:
        print(f"  note: {note}")
    if not e.lines:
        print("  no ticks in this window")
    for line in e.lines:
        print(f"  {line.at.astimezone(UTC).isoformat()}  {line.verdict:<12}  {line.reason}")


def run_simulate(args: argparse.Namespace, config: Config) -> int:
    return run_async(_simulate, args, config)


async def _simulate(args: argparse.Namespace, config: Config) -> int:
    from daemon.loading import Registry
    from daemon.simulate import Downtime, simulate

    now = SystemClock().now()
    try:
        start = parse_time(args.start, now=now)
        end = parse_time(args.end, now=start) if args.end else start + timedelta(days=1)
        downs = []
        for text in args.down:
            a, sep, b = text.partition("/")
            if not sep:
                raise argparse.ArgumentTypeError(f"--down {text!r}: write T1/T2")
            downs.append(Downtime(start=parse_time(a, now=start), end=parse_time(b, now=start)))
    except argparse.ArgumentTypeError as exc:
        error(str(exc))
        return 2
    if end <= start:
        error("--to must be after --from")
        return 2
    with contextlib.redirect_stdout(sys.stderr):
        result = load_definitions(config.definitions)
    for problem in result.errors:
        error(f"{problem.file}: {problem.message} (left out of the simulation)")
    registry = result.registry
    if args.name:
        unknown = [n for n in args.name if n not in registry.instigators]
        if unknown:
            error(f"--name: no schedule or sensor named {', '.join(map(repr, unknown))}")
            return 2
        registry = Registry(
            jobs=registry.jobs,
            schedules={k: v for k, v in registry.schedules.items() if k in args.name},
            sensors={k: v for k, v in registry.sensors.items() if k in args.name},
        )
    with contextlib.redirect_stdout(sys.stderr):
        sim = await simulate(registry, start=start, end=end, downtimes=downs)
    if args.json:
        print_json(
            {"ticks": [tick_json(t) for t in sim.ticks], "runs": [run_json(r) for r in sim.runs]}
        )
        return EXIT_OK
    rows = [
        (
            (t.scheduled_for or t.started_at).astimezone(UTC).isoformat(),
            t.instigator.name,
            t.status.value,
            len(t.run_ids) or None,
            len(t.deduplicated) or None,
            t.skip_reason or (t.error.splitlines()[0] if t.error else None),
        )
        for t in sim.ticks
    ]
    print(format_table(("TICK (UTC)", "NAME", "STATUS", "RUNS", "DEDUP", "REASON"), rows))
    print(
        f"\n{len(sim.ticks)} ticks, {len(sim.runs)} runs from {start.isoformat()} to "
        f"{end.isoformat()}" + (f", down {len(downs)}x" if downs else ""),
        file=sys.stderr,
    )
    return EXIT_OK
