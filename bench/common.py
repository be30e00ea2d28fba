"""What the benchmarks share: repeats, medians, a table, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str
    low: float | None = None
    high: float | None = None

    def row(self) -> tuple[str, str, str, str]:
        spread = "" if self.low is None else f"{self.low:.4g} .. {self.high:.4g}"
        return (self.name, f"{self.value:.4g} {self.unit}", spread, self.target)


def summarise(name: str, samples: Sequence[float], unit: str, target: str) -> Figure:
    return Figure(
        name, statistics.median(samples), unit, target, low=min(samples), high=max(samples)
    )


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load {load:.2f}"
    )


def print_table(title: str, figures: Sequence[Figure]) -> None:
    headers = ("figure", "median", "range", "target")
    rows = [headers, *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n{title}  ({machine()})")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
