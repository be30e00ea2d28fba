"""The long form of tests/torture/test_crash.py: the real `tickd serve` under load, killed
with SIGKILL at N seeded random moments (200 by default) and restarted each time, then
stopped with SIGTERM and checked through the CLI's JSON: no duplicate run_key per
instigator, every second of the schedule ticked exactly once (SUCCESS with one run, or
SKIPPED with a reason), no run left STARTING/RUNNING/CANCELING, no process left behind,
and `PRAGMA integrity_check` ok.

Prints a table of the figures; exit status 1 on any failure.

Run: .venv/bin/python -m bench.crash_long [--kills 200] [--seed N] [--keep DIR]
(or `make crash-long`).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from tests.torture.harness import crash_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs (200)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (random, printed)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the home in DIR")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"crash-long: seed={seed} kills={args.kills}", flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = crash_run(args.keep, kills=args.kills, seed=seed, say=_say)
    else:
        with tempfile.TemporaryDirectory(prefix="tickd-crash-") as tmp:
            figures = crash_run(Path(tmp), kills=args.kills, seed=seed, say=_say)
    rows = [("figure", "value"), *figures.rows()]
    width = max(len(name) for name, _ in rows)
    print()
    for i, (name, value) in enumerate(rows):
        print(f"{name.ljust(width)}  {value}")
        if i == 0:
            print(f"{'-' * width}  {'-' * 10}")
    for problem in figures.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 0 if figures.ok else 1


def _say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
