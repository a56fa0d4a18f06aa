"""The values a benchmark run produces. Runners fill them, renderers and the JSON writer only read them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .stats import Stats, linear_fit, ratio

# The stages `slim build` reports timings for, in pipeline order (loading the image into the engine is part
# of "assemble"). A stage the report lacks shows as a dash; one it adds gets a column after these.
STAGES = ("inspect", "index", "trace", "closure", "assemble", "verify")


def stage_names(timings: Iterable[Mapping[str, float]]) -> tuple[str, ...]:
    """STAGES, then any other stage the reports timed, in the order first seen."""
    extra = dict.fromkeys(name for timing in timings for name in timing if name not in STAGES)
    return STAGES + tuple(extra)


@dataclass(frozen=True)
class BuildMeasurement:
    """One `slim build` run as a subprocess: its report and what the OS says it cost."""

    exit_code: int
    wall_seconds: float
    peak_rss: int  # bytes: the slim process's high-water resident set (getrusage of the waited child)
    report: Mapping[str, Any] | None  # the JSON report, when slim wrote one
    error: str | None  # slim's last "Error:" line when it failed

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.report.get("timings", {})) if self.report else {}


@dataclass(frozen=True)
class ImageResult:
    name: str
    image: str
    kind: str  # what the app is: "web server", "batch job", ...
    original_size: int | None = None
    original_files: int | None = None
    slimmed_size: int | None = None  # as the engine counts it
    layer_size: int | None = None  # uncompressed layer tar
    compressed_size: int | None = None  # gzip of the layer, what a registry stores
    files_kept: int | None = None
    floor: int | None = None  # bytes of the files the traced run opened, executed or looked up
    verification: str = "not run"  # slim's own verdict: passed / failed / skipped / not run
    functional: str = "not run"  # bench's independent check of the slimmed image against the original
    functional_ok: bool | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    wall_seconds: float | None = None  # the median build's
    wall_runs: tuple[float, ...] = ()  # every build's, in the order they ran
    peak_rss: int | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.original_size, self.slimmed_size)

    @property
    def over_floor(self) -> float | None:
        """slimmed size / floor: 1.0 means nothing was kept beyond what the run opened."""
        return ratio(self.slimmed_size, self.floor)


@dataclass(frozen=True)
class OverheadRound:
    index: int
    first: str  # "untraced", "traced" or "opens only": the order rotates so drift hits every side alike
    untraced_rps: float
    traced_rps: float
    untraced_errors: int = 0  # socket errors plus non-2xx answers wrk counted
    traced_errors: int = 0
    # The machine's 1-minute load average as the round began: above the core count, something else was
    # competing for the CPU (on a shared machine, another test run) and the round's ratio is noise.
    load_before: float | None = None
    opens_only_rps: float | None = None  # traced without the lookup filter (--no-lookups); None in older results
    opens_only_errors: int = 0


@dataclass(frozen=True)
class OverheadResult:
    image: str
    command: str  # the wrk command line, the URL's port elided
    rounds: tuple[OverheadRound, ...]
    untraced: Stats
    traced: Stats
    ratio: Stats  # of the per-round traced/untraced ratios
    trace_events: tuple[int, ...] = ()  # fanotify events the tracer read in each traced round
    lookup_calls: tuple[int, ...] = ()  # stat/access/readlink calls the lookup tracer answered in each traced round
    lookups_note: str = ""  # why the lookup tracer was off, if it was (or, on, what it could not record)
    lookup_mechanism: str = ""  # "ebpf" or "seccomp"; "" when off, or in older results
    opens_only: Stats | None = None  # req/s traced with opens only (None in older results)
    opens_only_ratio: Stats | None = None  # of the per-round opens-only/untraced ratios

    @property
    def ratio_of_means(self) -> float:
        return self.traced.mean / self.untraced.mean


@dataclass(frozen=True)
class ScalingPoint:
    files: int
    target_bytes: int
    image: str
    image_size: int | None = None
    image_build_seconds: float | None = None  # docker build of the synthetic image (not slimtrace's cost)
    slimmed_size: int | None = None
    floor: int | None = None
    verification: str = "not run"
    timings: Mapping[str, float] = field(default_factory=dict)
    wall_seconds: float | None = None
    peak_rss: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class SizeFit:
    """Least-squares fit of a build's wall time over image size, across the points with the fewest files
    (so the size, not the file count, varies)."""

    seconds_per_gb: float
    intercept: float
    points: int
    files: int


def size_fit(points: Iterable[ScalingPoint]) -> SizeFit | None:
    measured = [p for p in points if p.image_size and p.wall_seconds and not p.error]
    if not measured:
        return None
    fewest = min(p.files for p in measured)
    by_size = [(p.image_size / 1e9, p.wall_seconds) for p in measured if p.files == fewest]
    fit = linear_fit([x for x, _ in by_size], [y for _, y in by_size])
    return SizeFit(fit[0], fit[1], len(by_size), fewest) if fit else None


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int
    kernel: str
    os: str
    engine_version: str
    storage_driver: str
    python: str
    slimtrace_version: str
    commit: str  # git HEAD, "+dirty" when the work tree had changes
    source_digest: str  # of slim/ and probes/ as measured (bench.machine.source_digest)


@dataclass(frozen=True)
class BenchRun:
    date: str  # UTC, ISO 8601
    machine: Machine
    options: Mapping[str, Any]
    images: tuple[ImageResult, ...] = ()
    overhead: OverheadResult | None = None
    overhead_error: str | None = None
    scaling: tuple[ScalingPoint, ...] = ()
    total_seconds: float | None = None
