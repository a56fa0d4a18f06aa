"""Pure arithmetic over measurements: spreads, ratios, the floor. No I/O, so tests pin it exactly."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from slim.model import ReasonKind


@dataclass(frozen=True)
class Stats:
    """Centre and spread of a few repeated measurements (stdev is the sample one; 0 for a single value)."""

    n: int
    mean: float
    median: float
    stdev: float
    min: float
    max: float


def summarize(values: Iterable[float]) -> Stats:
    values = list(values)
    if not values:
        raise ValueError("no measurements to summarize")
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stats(len(values), statistics.fmean(values), statistics.median(values), stdev, min(values), max(values))


def median_index(values: Sequence[float]) -> int:
    """Where the median of `values` is (the lower one of an even count): the run a report shows whole."""
    if not values:
        raise ValueError("no measurements")
    return sorted(range(len(values)), key=lambda index: values[index])[(len(values) - 1) // 2]


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios (traced round i / untraced round i), so drift between rounds cancels."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    return [n / d for n, d in zip(numerators, denominators) if d > 0]


# Reasons that say the traced run itself needed a file: it opened, executed or looked it up.
RUN_NEEDS = frozenset({ReasonKind.TRACED.value, ReasonKind.LOOKED_UP.value})


def floor_bytes(report: Mapping[str, Any]) -> int:
    """Bytes of the regular files the traced run opened, executed or looked up, from a `slim build` JSON report.

    A kept file counts when any of its reasons is "traced" or "looked-up" (its main reason may be another,
    e.g. the entrypoint): that is the smallest image that could still work without stripping or splitting
    files. A looked-up file counts because the run needs it whole though it never opened it: Python, for
    one, stats the `.py` beside every `.pyc` it loads and rejects the `.pyc` when the size differs.
    """
    return sum(
        item["size"]
        for item in report.get("kept", ())
        if item["kind"] == "file" and any(reason["kind"] in RUN_NEEDS for reason in item["reasons"])
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y over x; None with fewer than two distinct x."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    return slope, mean_y - slope * mean_x


def human_bytes(size: float | None) -> str:
    """Decimal units, as `docker images` shows sizes: 9.8 MB, 1.20 GB."""
    if size is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{int(size)} B"


def human_seconds(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"
