"""`tickd trigger`, `rerun` and `backfill`: queue runs by hand.

Everything is checked before the store is touched: a malformed flag, an unknown job or a
partition key the job does not have exits 2 and queues nothing. Runs go in through the
Python client (`daemon.client`), with the store's dedup:

* trigger: a MANUAL run (instigator `manual:<job>`), with the job's own tags and priority
  merged as a schedule's runs get them. `--run-key K` makes it idempotent: a second
  trigger with K queues nothing and reports the first run.
* rerun: a new MANUAL run with the original's job, run_config, tags, priority and
  partition; `parent_run_id` names the original, attempt 1.
* backfill: one BACKFILL run (instigator `backfill:<job>`) per partition key in the range,
  all in one transaction, each with run_key `backfill:<key>`: backfilling a range again
  queues only the keys never backfilled before. To redo a backfilled partition, `rerun` its
  run or `trigger JOB --partition KEY`.

In every case a partition that already has an active run is not queued twice.

JSON (`--json`): trigger and rerun print {created, deduplicated_by, run}
(deduplicated_by: null, "run_key" or "partition"; run: the queued run, or the existing one
that deduplicated the request; after `--wait`, as it finished). backfill prints
{job, from, to, partitions, created: [{partition_key, run_id}],
deduplicated: [{partition_key, run_id, by}]}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from daemon.adapters.system_clock import SystemClock
from daemon.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_command,
    error,
    note,
    print_json,
    run_async,
)
from daemon.cli.history import existing_store
from daemon.cli.runctl import live_lease, tag_arg
from daemon.cli.shapes import run_json
from daemon.client import AsyncClient, Submission, manual_instigator, rerun_of
from daemon.config import Config
from daemon.definitions import Job
from daemon.domain.ids import IdGenerator
from daemon.domain.partitions import StaticPartitions, TimeWindowPartitions
from daemon.domain.requests import RunRequest
from daemon.domain.runs import PRIORITY_TAG, Instigator, InstigatorKind, Run, RunStatus
from daemon.domain.ticks import Outcome
from daemon.errors import InvalidPartitionError, RunNotFoundError
from daemon.evaluation import EvaluationError, RunDefaults, build_runs
from daemon.loading import LoadResult, UnknownDefinitionError, load_definitions

BACKFILL_KEY_PREFIX: Final = "backfill:"
MAX_BACKFILL: Final = 10_000  # partitions in one backfill; more is almost surely a typo
_CONFIG_EXAMPLE: Final = """'{"day": "2026-03-14"}'"""


class UsageError(Exception):
    """A flag or argument that cannot be used: exit 2, nothing queued."""


def register(subparsers: Subparsers) -> None:
    trigger = add_command(
        subparsers,
        "trigger",
        run=run_trigger,
        help="queue a run of a job now",
        description=(
            "Queue a MANUAL run of JOB. Here --config is the run's config as JSON (or @file);\n"
            "name a tickd.toml before the command (`tickd --config FILE trigger ...`) or\n"
            "with TICKD_CONFIG."
        ),
    )
    trigger.add_argument("job", metavar="JOB")
    # The global --config FILE, accepted after every other command name, gives way here
    # to the run config (the option DESIGN.md documents for trigger): a group created
    # under "resolve" takes the option string over.
    trigger.conflict_handler = "resolve"
    run_options = trigger.add_argument_group("run options")
    run_options.add_argument(
        "--config",
        dest="run_config",
        metavar="JSON",
        help="the run config: a JSON object, or @FILE to read one from a file",
    )
    _add_run_options(run_options)
    run_options.add_argument("--partition", metavar="KEY", help="the partition to run")
    run_options.add_argument(
        "--run-key", metavar="KEY", help="queue at most one manual run of JOB with this key"
    )
    trigger.add_argument(
        "--wait", action="store_true", help="wait for the run to end; exit 0 only on SUCCESS"
    )
    trigger.add_argument("--json", action="store_true", help="print one JSON object")

    rerun = add_command(
        subparsers, "rerun", run=run_rerun, help="queue a new run like an earlier one"
    )
    rerun.add_argument("run_id", metavar="RUN_ID")
    rerun.add_argument("--json", action="store_true", help="print one JSON object")

    backfill = add_command(
        subparsers,
        "backfill",
        run=run_backfill,
        help="queue one run per partition of a job between two keys (both included)",
    )
    backfill.add_argument("job", metavar="JOB")
    backfill.add_argument("--from", dest="first", metavar="KEY", required=True)
    backfill.add_argument("--to", dest="last", metavar="KEY", required=True)
    _add_run_options(backfill.add_argument_group("run options"))
    backfill.add_argument("--json", action="store_true", help="print one JSON object")


def _add_run_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--tag", type=tag_arg, action="append", default=[], metavar="K=V", help="repeatable"
    )
    group.add_argument(
        "--priority",
        type=_integer,
        metavar="N",
        help="higher runs first (default: the job's, else 0)",
    )


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number, e.g. 5 or -1") from None


# ---- trigger ------------------------------------------------------------------------------


def run_trigger(args: argparse.Namespace, config: Config) -> int:
    try:
        run_config = _run_config(args.run_config)
        _check_tags(args.tag)
        if args.run_key is not None and not args.run_key.strip():
            raise UsageError("--run-key is empty; give a key, or leave the flag out")
        job = _job(config, args.job)
        _check_partition(job, args.partition, flag="--partition")
        run = _build(
            job,
            RunRequest(
                run_key=args.run_key,
                partition_key=args.partition,
                run_config=run_config,
                tags=dict(args.tag),
                priority=args.priority,
            ),
            instigator=manual_instigator(job.name),
        )
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    return run_async(_trigger, args, config, run)


async def _trigger(args: argparse.Namespace, config: Config, run: Run) -> int:
    store = await existing_store(config)
    client = AsyncClient(store)
    try:
        (submitted,) = await client.enqueue([run])
        _report(submitted, what=f"run of {run.job}")
        final = submitted.run
        if args.wait:
            if live_lease(await store.current_lease(), SystemClock().now()) is None:
                note("no daemon is running on this store; the run waits for `tickd serve`")
            final = await client.wait(final.run_id, poll=0.2)
            took = _took(final)
            note(f"run {final.run_id} finished: {final.status.value}{took}{_why(final)}")
    finally:
        await client.close()
    _output(args, submitted, final)
    if args.wait and final.status is not RunStatus.SUCCESS:
        return EXIT_FAILURE
    return EXIT_OK


def _run_config(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    source = "--config"
    text = raw
    if raw.startswith("@"):
        path = Path(raw[1:]).expanduser()
        source = f"--config {raw}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"{source} is not valid JSON ({exc}); pass an object such as {_CONFIG_EXAMPLE} "
            "or @file.json"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f"{source} must be a JSON object, not {type(value).__name__}; e.g. {_CONFIG_EXAMPLE}"
        )
    return value


def _check_tags(tags: Sequence[tuple[str, str]]) -> None:
    for key, value in tags:
        if key == PRIORITY_TAG:
            try:
                int(value)
            except ValueError:
                raise UsageError(
                    f"--tag {key}={value!r}: the priority tag takes a whole number; "
                    "or use --priority N"
                ) from None


def _job(config: Config, name: str) -> Job:
    result = _load(config)
    try:
        return result.registry.job(name)
    except UnknownDefinitionError as exc:
        hint = ""
        if result.errors:
            count = len(result.errors)
            hint = (
                f" ({count} problem{'s' if count != 1 else ''} in the definitions may hide it; "
                "see `tickd check`)"
            )
        raise UsageError(f"{exc}{hint}") from None


def _load(config: Config) -> LoadResult:
    # Definitions modules may print while imported; keep stdout for our output.
    with contextlib.redirect_stdout(sys.stderr):
        return load_definitions(config.definitions)


def _check_partition(job: Job, key: str | None, *, flag: str) -> None:
    if key is None:
        if job.partitions is not None:
            raise UsageError(
                f"job {job.name!r} is partitioned ({job.partitions}); name the partition "
                f"with {flag} KEY"
            )
        return
    if job.partitions is None:
        raise UsageError(f"job {job.name!r} has no partitions; leave out {flag}")
    try:
        job.partitions.validate_key(key)
    except InvalidPartitionError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _build(job: Job, request: RunRequest, *, instigator: Instigator) -> Run:
    (run,) = _build_all(job, [request], instigator=instigator)
    return run


def _build_all(job: Job, requests: Sequence[RunRequest], *, instigator: Instigator) -> list[Run]:
    """QUEUED runs with the job's tags and priority merged, as a schedule's runs get them."""
    try:
        return build_runs(
            f"{instigator.kind.value} {job.name!r}",
            requests,
            jobs={job.name: job},
            instigator=instigator,
            defaults=RunDefaults(job=job.name),
            now=SystemClock().now(),
            ids=IdGenerator(),
        )
    except EvaluationError as exc:  # validated above; kept as a clear message regardless
        raise UsageError(exc.message) from None


# ---- rerun --------------------------------------------------------------------------------


def run_rerun(args: argparse.Namespace, config: Config) -> int:
    return run_async(_rerun, args, config)


async def _rerun(args: argparse.Namespace, config: Config) -> int:
    store = await existing_store(config)
    client = AsyncClient(store)
    try:
        original = await store.get_run(args.run_id)
        if original is None:
            raise RunNotFoundError(args.run_id)
        (submitted,) = await client.enqueue([rerun_of(original, now=SystemClock().now())])
    finally:
        await client.close()
    _report(submitted, what=f"rerun of {original.run_id} ({original.job})")
    _output(args, submitted, submitted.run)
    return EXIT_OK


# ---- reporting trigger and rerun ----------------------------------------------------------

_BY: Final = {
    Outcome.DEDUPLICATED_RUN_KEY: "run_key",
    Outcome.DEDUPLICATED_PARTITION: "partition",
    Outcome.DEDUPLICATED_IN_TICK: "run_key",
}


def _report(submitted: Submission, *, what: str) -> None:
    run = submitted.run
    if submitted.created:
        note(f"queued {what}: {run.run_id}")
    elif submitted.outcome is Outcome.DEDUPLICATED_PARTITION:
        note(
            f"partition {run.partition_key!r} of {run.job} already has an active run, "
            f"{run.run_id} ({run.status.value}); nothing new queued"
        )
    else:
        note(
            f"run_key {run.run_key!r} was already used by run {run.run_id} "
            f"({run.status.value}); nothing new queued"
        )


def _output(args: argparse.Namespace, submitted: Submission, final: Run) -> None:
    if args.json:
        print_json(
            {
                "created": submitted.created,
                "deduplicated_by": _BY.get(submitted.outcome),
                "run": run_json(final),
            }
        )
    else:
        print(final.run_id)


def _took(run: Run) -> str:
    if run.started_at is None or run.ended_at is None:
        return ""
    return f" after {(run.ended_at - run.started_at).total_seconds():.1f}s"


def _why(run: Run) -> str:
    return f": {run.error.splitlines()[0]}" if run.error else ""


# ---- backfill -----------------------------------------------------------------------------


def run_backfill(args: argparse.Namespace, config: Config) -> int:
    try:
        _check_tags(args.tag)
        job = _job(config, args.job)
        keys = _keys_between(job, args.first, args.last)
        runs = _build_all(
            job,
            [
                RunRequest(
                    partition_key=key,
                    run_key=f"{BACKFILL_KEY_PREFIX}{key}",
                    tags=dict(args.tag),
                    priority=args.priority,
                )
                for key in keys
            ],
            instigator=Instigator(kind=InstigatorKind.BACKFILL, name=job.name),
        )
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    return run_async(_backfill, args, config, runs)


def _keys_between(job: Job, first: str, last: str) -> list[str]:
    parts = job.partitions
    if parts is None:
        raise UsageError(
            f"job {job.name!r} has no partitions, so there is nothing to backfill; "
            f"use `tickd trigger {job.name}`"
        )
    for flag, key in (("--from", first), ("--to", last)):
        try:
            parts.validate_key(key)
        except InvalidPartitionError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    try:
        if isinstance(parts, TimeWindowPartitions):
            keys = parts.keys_between(first, last)
        elif isinstance(parts, StaticPartitions):
            order = parts.keys()
            low, high = order.index(first), order.index(last)
            if low > high:
                raise UsageError(
                    f"--to {last!r} comes before --from {first!r} in the job's keys; swap them"
                )
            keys = list(order[low : high + 1])
        else:
            raise UsageError(f"job {job.name!r}: cannot list the keys of {parts}")
    except InvalidPartitionError as exc:
        raise UsageError(f"--to: {exc}; swap --from and --to?") from None
    if len(keys) > MAX_BACKFILL:
        raise UsageError(
            f"{first}..{last} holds {len(keys)} partitions, more than {MAX_BACKFILL} at once; "
            "backfill a narrower range at a time"
        )
    return keys


async def _backfill(args: argparse.Namespace, config: Config, runs: list[Run]) -> int:
    store = await existing_store(config)
    client = AsyncClient(store)
    try:
        submitted = await client.enqueue(runs)
    finally:
        await client.close()
    created = [s for s in submitted if s.created]
    deduplicated = [s for s in submitted if not s.created]
    if args.json:
        print_json(
            {
                "job": args.job,
                "from": args.first,
                "to": args.last,
                "partitions": len(submitted),
                "created": [
                    {"partition_key": s.run.partition_key, "run_id": s.run.run_id} for s in created
                ],
                "deduplicated": [
                    {
                        "partition_key": s.requested.partition_key,
                        "run_id": s.run.run_id,
                        "by": _BY.get(s.outcome),
                    }
                    for s in deduplicated
                ],
            }
        )
    else:
        print(_backfill_summary(args, created, deduplicated))
    return EXIT_OK


def _backfill_summary(
    args: argparse.Namespace, created: list[Submission], deduplicated: list[Submission]
) -> str:
    total = len(created) + len(deduplicated)
    by_key = sum(1 for s in deduplicated if s.outcome is not Outcome.DEDUPLICATED_PARTITION)
    active = len(deduplicated) - by_key
    lines = [
        f"backfill {args.job} {args.first}..{args.last}: {total} partitions, "
        f"{len(created)} queued, {len(deduplicated)} deduplicated"
    ]
    if by_key:
        lines.append(f"  {by_key} already backfilled before (run_key {BACKFILL_KEY_PREFIX}KEY)")
    if active:
        lines.append(f"  {active} with a run already active")
    return "\n".join(lines)
