"""The scaling chart (PNG): build time and peak memory against image bytes and against file count.

matplotlib is a bench-only dependency (the `bench` extra); without it the chart is skipped, not the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .model import ScalingPoint, stage_names
from .targets import MEMORY_GOAL


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def scaling_chart(points: Sequence[ScalingPoint], path: Path, title: str) -> bool:
    """Write the chart; False when there is nothing to draw (no measured point)."""
    measured = [p for p in points if p.wall_seconds is not None and p.image_size and p.peak_rss and not p.error]
    if not measured:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fewest_files = min(p.files for p in measured)
    least_data = min(p.target_bytes for p in measured)
    by_bytes = sorted((p for p in measured if p.files == fewest_files), key=lambda p: p.image_size or 0)
    by_files = sorted((p for p in measured if p.target_bytes == least_data), key=lambda p: p.files)

    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    figure.suptitle(title)
    gigabytes = [(p.image_size or 0) / 1e9 for p in by_bytes]
    _time_panel(axes[0][0], gigabytes, by_bytes, f"time vs image size ({fewest_files:,} files)", "image size (GB)")
    _memory_panel(axes[1][0], gigabytes, by_bytes, "image size (GB)")
    _time_panel(axes[0][1], [p.files for p in by_files], by_files,
                f"time vs file count ({least_data / 1e6:g} MB of data)", "files in the data directory", log=True)
    _memory_panel(axes[1][1], [p.files for p in by_files], by_files, "files in the data directory", log=True)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _time_panel(axis, xs, points: Sequence[ScalingPoint], title: str, xlabel: str, log: bool = False) -> None:
    axis.plot(xs, [p.wall_seconds for p in points], "o-", label="total (wall)")
    for stage in stage_names(p.timings for p in points):
        if any(p.timings.get(stage, 0.0) >= 1.0 for p in points):  # the stages that cost something
            axis.plot(xs, [p.timings.get(stage, 0.0) for p in points], ".--", label=stage)
    axis.set_title(title)
    _label_axes(axis, xlabel, "seconds", log)


def _memory_panel(axis, xs, points: Sequence[ScalingPoint], xlabel: str, log: bool = False) -> None:
    axis.plot(xs, [(p.peak_rss or 0) / 1e6 for p in points], "o-", color="tab:red", label="peak RSS of slim build")
    axis.axhline(MEMORY_GOAL / 1e6, color="grey", linestyle=":", label=f"goal: {MEMORY_GOAL / 1e6:g} MB")
    axis.set_ylim(bottom=0)
    _label_axes(axis, xlabel, "MB", log)


def _label_axes(axis, xlabel: str, ylabel: str, log: bool) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if log:
        axis.set_xscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
