"""`make bench`: every benchmark, one table (median and range over repeats, and the
machine), written as JSON to bench/results/<commit>.json for comparison across commits.

Run: .venv/bin/python -m bench [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import anyio

from bench import daemon_bench, dispatch_bench, engine_bench, store_bench
from bench.common import Figure, machine, print_table, summarise


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def collect(repeats: int, quick: bool) -> list[Figure]:
    samples: dict[str, list[Figure]] = defaultdict(list)
    for _ in range(repeats):
        batch = [
            *anyio.run(store_bench.figures, 3, backend="asyncio"),
            *anyio.run(engine_bench.main, quick, backend="asyncio"),
            *anyio.run(dispatch_bench.main, 500 if quick else 2000, backend="asyncio"),
        ]
        for figure in batch:
            samples[figure.name].append(figure)
    out = [
        summarise(name, [f.value for f in fs], fs[0].unit, fs[0].target)
        for name, fs in samples.items()
    ]
    out += daemon_bench.main(idle_seconds=5 if quick else 10, repeats=repeats, n=1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    figures = collect(repeats, args.quick)
    print_table(f"tickd benchmarks, {repeats} repeat(s)", figures)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    path = out / f"{_commit()}.json"
    path.write_text(
        json.dumps(
            {
                "commit": _commit(),
                "at": datetime.now(UTC).isoformat(),
                "machine": machine(),
                "repeats": repeats,
                "figures": [
                    {
                        "name": f.name,
                        "median": f.value,
                        "low": f.low,
                        "high": f.high,
                        "unit": f.unit,
                        "target": f.target,
                    }
                    for f in figures
                ],
            },
            indent=2,
        )
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
