"""The goals from the benchmarks issue, checked against a run: "measured vs goal", never asserted.

Each goal gives one row per thing it applies to; a row is MET, MISSED, or NOT MEASURED (the part of the
benchmark it needs was skipped or failed). Nothing exits non-zero because of a MISSED row.
"""
from __future__ import annotations

from dataclasses import dataclass

from .model import BenchRun
from .stats import human_bytes

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"

RATIO_GOAL = 10.0
RATIO_IMAGES = ("nginx", "pyapp", "nodeapp", "redis")
FLOOR_GOAL = 1.2
OVERHEAD_GOAL = 0.95
MEMORY_GOAL = 300_000_000  # bytes of peak RSS (decimal MB, like every size here)
MEMORY_GOAL_IMAGE_BYTES = 5_000_000_000


@dataclass(frozen=True)
class TargetRow:
    goal: str
    subject: str
    measured: str
    status: str


def evaluate(run: BenchRun) -> list[TargetRow]:
    return [*_ratio_rows(run), *_floor_rows(run), *_overhead_rows(run), *_memory_rows(run)]


def _ratio_rows(run: BenchRun) -> list[TargetRow]:
    goal = f"ratio >= {RATIO_GOAL:g}x, verification passed"
    by_name = {image.name: image for image in run.images}
    rows = []
    for name in RATIO_IMAGES:
        image = by_name.get(name)
        if image is None or image.ratio is None:
            rows.append(TargetRow(goal, name, image.error if image and image.error else "–", NOT_MEASURED))
            continue
        ok = image.ratio >= RATIO_GOAL and image.verification == "passed"
        # original / floor: the ratio no slimmer reaches without stripping or splitting the files the app opens
        ceiling = ""
        if image.floor and image.original_size:
            ceiling = f" (the floor allows {image.original_size / image.floor:.1f}x)"
        measured = f"{image.ratio:.1f}x, {image.verification}{ceiling}"
        rows.append(TargetRow(goal, name, measured, MET if ok else MISSED))
    return rows


def _floor_rows(run: BenchRun) -> list[TargetRow]:
    goal = f"slimmed <= {FLOOR_GOAL:g} x floor"
    rows = []
    for image in run.images:
        if image.over_floor is None:
            rows.append(TargetRow(goal, image.name, "–", NOT_MEASURED))
        else:
            status = MET if image.over_floor <= FLOOR_GOAL else MISSED
            rows.append(TargetRow(goal, image.name, f"{image.over_floor:.2f}x", status))
    return rows


def _overhead_rows(run: BenchRun) -> list[TargetRow]:
    goal = f"traced/untraced nginx req/s >= {OVERHEAD_GOAL:g}"
    if run.overhead is None:
        return [TargetRow(goal, "nginx under wrk", run.overhead_error or "–", NOT_MEASURED)]
    # The median of the per-round ratios: on a shared 2-core machine one disturbed round must not decide.
    spread = run.overhead.ratio
    measured = (f"median {spread.median:.3f}, mean {spread.mean:.3f} "
                f"(min {spread.min:.3f}, max {spread.max:.3f}, n={spread.n})")
    return [TargetRow(goal, "nginx under wrk", measured, MET if spread.median >= OVERHEAD_GOAL else MISSED)]


def _memory_rows(run: BenchRun) -> list[TargetRow]:
    goal = f"peak RSS < {human_bytes(MEMORY_GOAL)} for the 5 GB image"
    measured = [(p, p.peak_rss) for p in run.scaling if p.target_bytes >= MEMORY_GOAL_IMAGE_BYTES and p.peak_rss]
    if not measured:
        return [TargetRow(goal, "synthetic 5 GB", "–", NOT_MEASURED)]
    return [
        TargetRow(
            goal,
            f"synthetic {point.files:,} files, {human_bytes(point.target_bytes)}",
            human_bytes(peak),
            MET if peak < MEMORY_GOAL else MISSED,
        )
        for point, peak in measured
    ]
