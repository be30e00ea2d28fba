"""The long form of tests/dst: every minute of N years, every zone x cron, against the oracle.

For each zone of `tests.dst.oracle.ZONES` and each cron of `CRONS`, the oracle walks every
UTC minute from 1 January of `--start` for `--years` years (offsets sampled every 15
minutes and bisected) and `parse_cron(cron, zone).fire_times` lists the same span; the two
must be equal. It also checks, per zone, that the 6-hourly sampling the CI short form
relies on finds the same changes of offset as the 15-minute sampling.

Prints a table (zone, crons, fire times compared, mismatches, seconds) and, for each
mismatch, the zone, the cron and the first differing instants in UTC and wall time. Exit
status 1 on any mismatch.

Run: .venv/bin/python -m bench.dst_long [--years 10] [--start 2011] [--processes N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import Pool

from daemon.domain.cron import parse_cron
from tests.dst.oracle import (
    CRONS,
    DAY,
    ZONES,
    describe_difference,
    oracle_fire_times,
    segments,
    to_minute,
    transitions,
)

SHORT_FORM_SAMPLE = 6 * 3600  # seconds, as tests/dst/test_dst_oracle.py samples offsets


@dataclass(frozen=True, slots=True)
class Result:
    zone: str
    expression: str
    compared: int
    mismatches: int
    difference: str | None
    seconds: float


def _span(start_year: int, years: int) -> tuple[datetime, datetime]:
    return datetime(start_year, 1, 1, tzinfo=UTC), datetime(start_year + years, 1, 1, tzinfo=UTC)


def compare(task: tuple[str, str, int, int]) -> Result:
    """One zone x cron over the whole span."""
    zone, expression, start_year, years = task
    began = time.perf_counter()
    after, until = _span(start_year, years)
    known = segments(zone, to_minute(after) - 3 * DAY, to_minute(until) + DAY)
    expected = oracle_fire_times(expression, zone, after, until, known=known)
    got = list(parse_cron(expression, zone).fire_times(after, until))
    difference = describe_difference(zone, expression, expected, got)
    mismatches = len(set(expected).symmetric_difference(got))
    if difference is not None and mismatches == 0:
        mismatches = 1  # same instants, not the same list (order or repeats)
    return Result(
        zone, expression, len(expected), mismatches, difference, time.perf_counter() - began
    )


def check_sampling(task: tuple[str, int, int]) -> tuple[str, int, bool]:
    """Whether the short form's 6-hourly sampling finds every change the 15-minute one does."""
    zone, start_year, years = task
    after, until = _span(start_year, years)
    fine = transitions(zone, after, until)
    coarse = transitions(zone, after, until, SHORT_FORM_SAMPLE)
    return zone, len(fine), fine == coarse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dst_long", description=__doc__)
    parser.add_argument("--years", type=int, default=10, help="span in years (default 10)")
    parser.add_argument("--start", type=int, default=2011, help="first year (default 2011)")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="worker processes"
    )
    args = parser.parse_args(argv)
    after, until = _span(args.start, args.years)
    print(
        f"DST long form: {len(ZONES)} zones x {len(CRONS)} crons, every minute of "
        f"{after:%Y-%m-%d} .. {until:%Y-%m-%d} (UTC), {args.processes} processes"
    )
    began = time.perf_counter()
    # Dense crons first, so that the slowest tasks do not start last.
    tasks = [(z, c, args.start, args.years) for c in reversed(CRONS) for z in ZONES]
    by_zone: dict[str, list[Result]] = defaultdict(list)
    with Pool(args.processes) as pool:
        sampling = pool.map(check_sampling, [(z, args.start, args.years) for z in ZONES])
        for result in pool.imap_unordered(compare, tasks):
            by_zone[result.zone].append(result)
    elapsed = time.perf_counter() - began

    changes = {zone: (count, same) for zone, count, same in sampling}
    header = ("zone", "changes", "crons", "fire times compared", "mismatches", "cpu s")
    rows = []
    for zone in ZONES:
        results = by_zone[zone]
        count, same = changes[zone]
        rows.append(
            (
                zone,
                f"{count}" + ("" if same else " (6 h sampling misses some!)"),
                str(len(results)),
                f"{sum(r.compared for r in results):,}",
                str(sum(r.mismatches for r in results)),
                f"{sum(r.seconds for r in results):.1f}",
            )
        )
    all_results = [r for results in by_zone.values() for r in results]
    rows.append(
        (
            "total",
            str(sum(count for count, _ in changes.values())),
            str(len(all_results)),
            f"{sum(r.compared for r in all_results):,}",
            str(sum(r.mismatches for r in all_results)),
            f"{sum(r.seconds for r in all_results):.1f}",
        )
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )

    failures = sorted(
        (r for r in all_results if r.difference is not None), key=lambda r: (r.zone, r.expression)
    )
    for r in failures:
        print(f"MISMATCH ({r.mismatches} instants): {r.difference}")
    sampling_ok = all(same for _, same in changes.values())
    if not sampling_ok:
        print("6-hourly sampling missed changes of offset: the CI short form does not see them")
    print(
        f"{len(failures)} of {len(all_results)} zone x cron pairs differ; wall time {elapsed:.1f} s"
    )
    return 1 if failures or not sampling_ok else 0


if __name__ == "__main__":
    sys.exit(main())
