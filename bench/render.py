"""A BenchRun as markdown (the tables in bench/results/*.md) and as JSON. Computes nothing it could not
read from the run, except formatting and the targets' verdicts (bench.targets)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from .model import BenchRun, ImageResult, OverheadResult, ScalingPoint, size_fit, stage_names
from .stats import human_bytes, human_seconds
from .targets import DOCKERSLIM, dockerslim_ratio, evaluate


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A GitHub markdown table. `align` has one letter per column, l or r (default: l); pipes are escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    marks = {"l": "---", "r": "--:"}
    rule = [marks[align[i]] if i < len(align) else "---" for i in range(len(headers))]
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(cell(value) for value in line) + " |" for line in lines)


def markdown(run: BenchRun, chart_name: str | None = None) -> str:
    parts = [f"# slimtrace benchmarks, {run.date[:10]}", "", _machine(run), ""]
    if run.images:
        parts += ["## Corpus: size", "", _sizes(run.images), "", _size_notes(), "",
                  "## Corpus: build time and memory", "", _costs(run.images), "", _cost_notes(), "",
                  "## Corpus: wall time next to DockerSlim", "", _dockerslim(run.images), "", _dockerslim_notes(), ""]
    if run.overhead or run.overhead_error:
        parts += ["## Tracing overhead (nginx under wrk)", "", _overhead(run.overhead, run.overhead_error), ""]
    if run.scaling:
        parts += ["## Scaling (synthetic images)", "", _scaling(run.scaling), "", _scaling_notes(run.scaling), ""]
        if chart_name:
            parts += [f"![build time and peak memory against image size]({chart_name})", ""]
    parts += ["## Targets (from the issue; measured, not asserted)", "", _targets(run), ""]
    if run.total_seconds is not None:
        parts += [f"Whole run: {run.total_seconds / 60:.1f} min. Options: `{_options(run.options)}`.", ""]
    return "\n".join(parts)


def to_json(run: BenchRun) -> dict[str, Any]:
    """Every field of the run, plus the derived numbers a reader of the JSON would otherwise recompute."""
    data = dataclasses.asdict(run)
    for image, out in zip(run.images, data["images"]):
        out["ratio"] = image.ratio
        out["over_floor"] = image.over_floor
    if run.overhead is not None:
        data["overhead"]["ratio_of_means"] = run.overhead.ratio_of_means
    data["targets"] = [dataclasses.asdict(row) for row in evaluate(run)]
    return data


def _machine(run: BenchRun) -> str:
    m = run.machine
    rows = [
        ("date (UTC)", run.date),
        ("cores", m.cores),
        ("memory", human_bytes(m.memory_bytes)),
        ("OS, kernel", f"{m.os}, {m.kernel}"),
        ("Docker engine", f"{m.engine_version} ({m.storage_driver})"),
        ("Python", m.python),
        ("slimtrace", f"{m.slimtrace_version} at {m.commit}, source digest {m.source_digest}"),
    ]
    return table(("machine", ""), rows)


def _sizes(images: Sequence[ImageResult]) -> str:
    rows = []
    for image in images:
        if image.error and image.slimmed_size is None:
            rows.append((image.name, human_bytes(image.original_size), f"error: {image.error}", *["–"] * 8))
            continue
        rows.append((
            image.name,
            human_bytes(image.original_size),
            human_bytes(image.slimmed_size),
            human_bytes(image.compressed_size),
            _x(image.ratio),
            f"{_count(image.original_files)} → {_count(image.files_kept)}",
            human_bytes(image.floor),
            _x(image.over_floor, digits=2),
            image.verification,
            image.functional,
            image.kind,
        ))
    headers = ("image", "original", "slimmed", "slimmed, gzip layer", "ratio", "files", "floor",
               "slimmed / floor", "verification", "functional check", "app")
    return table(headers, rows, "lrrrrrrrlll")


def _size_notes() -> str:
    return (
        "*original* and *slimmed* are sizes as the engine counts them (uncompressed); *slimmed, gzip layer* is "
        "what a registry would store. *floor* is the bytes of the files the traced run opened, executed or looked up: the "
        "smallest image that could still work without stripping files. *verification* is slimtrace's own "
        "check; *functional check* is bench's, comparing what a user of the app sees from the original and the "
        "slimmed image."
    )


def _costs(images: Sequence[ImageResult]) -> str:
    stages = stage_names(image.timings for image in images)
    rows = [
        (image.name, *(human_seconds(image.timings.get(stage)) for stage in stages),
         human_seconds(image.wall_seconds), human_bytes(image.peak_rss))
        for image in images
    ]
    return table(("image", *stages, "total (wall)", "peak RSS"), rows, "l" + "r" * (len(stages) + 2))


def _cost_notes() -> str:
    return (
        "Seconds per pipeline stage as `slim build` reports them (*assemble* includes loading the image into "
        "the engine); *total* is the wall time of the whole `slim build` process, start-up included (from "
        "byte-compiled sources, as `pip install` leaves them); *peak "
        "RSS* is that process's high-water resident memory. Each image is built several times (`--builds`), "
        "each time with an empty cache of parsed Python sources, as a first build is; the row is the build of "
        "median wall time."
    )


def _dockerslim(images: Sequence[ImageResult]) -> str:
    rows = [
        (image.name, human_seconds(image.wall_seconds), ", ".join(human_seconds(wall) for wall in image.wall_runs),
         DOCKERSLIM[image.name][0], f"{DOCKERSLIM[image.name][1]:g}", _x(dockerslim_ratio(image), digits=2))
        for image in images if image.name in DOCKERSLIM
    ]
    headers = ("image", "slimtrace (wall, median)", "every build", "DockerSlim's app",
               "DockerSlim 1.40.11 (issue 13's figure)", "ratio")
    return table(headers, rows, "lrllrr")


def _dockerslim_notes() -> str:
    return (
        "DockerSlim's seconds are the figures issue 13 reports for DockerSlim 1.40.11 on this machine kind with "
        "apps like the corpus's (default flags, mean of 2): quoted, not measured by bench. *ratio* is "
        "slimtrace's median wall time over that figure; the target is at most 0.5x."
    )


def _lookups_line(result: OverheadResult) -> str:
    calls = ", ".join(map(str, result.lookup_calls))
    if result.lookup_mechanism:
        note = f" ({result.lookups_note})" if result.lookups_note else ""
        return f"lookups traced with {result.lookup_mechanism}{note}, lookup calls per traced round: {calls}"
    if result.lookups_note:
        return f"lookups not traced: {result.lookups_note}"
    return f"lookup calls answered: {calls}"  # results from before the mechanism was recorded


def _overhead(result: OverheadResult | None, error: str | None) -> str:
    if result is None:
        return f"Not measured: {error}"
    rows = [
        (r.index, r.first, f"{r.untraced_rps:,.0f}", f"{r.traced_rps:,.0f}", f"{r.traced_rps / r.untraced_rps:.3f}",
         _optional(r.opens_only_rps, "{:,.0f}"),
         _optional(r.opens_only_rps and r.opens_only_rps / r.untraced_rps, "{:.3f}"),
         f"{r.untraced_errors} / {r.traced_errors} / {r.opens_only_errors}",
         "–" if r.load_before is None else f"{r.load_before:.2f}")
        for r in result.rounds
    ]
    headers = ("round", "ran first", "untraced req/s", "traced req/s", "traced / untraced", "opens only req/s",
               "opens only / untraced", "errors (u / t / o)", "load avg at start")
    rounds = table(headers, rows, "rlrrrrrrr")
    lines = [
        ("untraced req/s", result.untraced, "{:,.0f}"),
        ("traced req/s", result.traced, "{:,.0f}"),
        ("traced / untraced (per round)", result.ratio, "{:.3f}"),
        ("opens only req/s", result.opens_only, "{:,.0f}"),
        ("opens only / untraced (per round)", result.opens_only_ratio, "{:.3f}"),
    ]
    summary = table(
        ("", "median", "mean", "stdev", "min", "max"),
        [(name, *(form.format(v) for v in (stats.median, stats.mean, stats.stdev, stats.min, stats.max)))
         for name, stats, form in lines if stats],
        "lrrrrr",
    )
    events = ", ".join(map(str, result.trace_events))
    lookups = _lookups_line(result)
    return (
        f"`{result.command}` against `{result.image}`, published on 127.0.0.1; {len(result.rounds)} rounds, "
        f"the order rotating. The traced side runs under `slim.build.tracing.run_traced` exactly as a build "
        f"does, lookup tracer included (fanotify events read per traced round: {events}; {lookups}); the "
        f"*opens only* side is the same without the lookup tracer (`--no-lookups`): the difference between "
        f"the two is what the lookup tracer costs.\n\n{rounds}\n\n{summary}\n\n"
        f"Ratio of the means (traced): **{result.ratio_of_means:.3f}**. The 1-minute load average at the start of "
        f"a round above the number of cores means something else was competing for the CPU during it."
    )


def _optional(value: float | None, form: str) -> str:
    """A figure older results lack: a dash for them."""
    return "–" if value is None else form.format(value)


def _scaling(points: Sequence[ScalingPoint]) -> str:
    stages = stage_names(p.timings for p in points)
    rows = []
    for p in points:
        rows.append((
            f"{p.files:,}",
            human_bytes(p.target_bytes),
            human_bytes(p.image_size),
            human_bytes(p.slimmed_size),
            human_bytes(p.floor),
            p.verification if not p.error else f"error: {p.error}",
            *(human_seconds(p.timings.get(stage)) for stage in stages),
            human_seconds(p.wall_seconds),
            human_bytes(p.peak_rss),
        ))
    headers = ("files", "data", "image", "slimmed", "floor", "verification", *stages, "total (wall)", "peak RSS")
    return table(headers, rows, "rrrrrl" + "r" * (len(stages) + 2))


def _scaling_notes(points: Sequence[ScalingPoint]) -> str:
    lines = [
        "Synthetic images: the fixture base plus *files* files of random bytes, *data* in all; the app reads "
        "three of them, so what is kept stays small while the image grows. Stage columns are seconds: *index* "
        "reads the image's metadata (in place from the engine's storage, or its export where the engine keeps "
        "no layer directories), *assemble* writes the slimmed layer."
    ]
    fit = size_fit(points)
    if fit:
        lines.append(
            f"Least-squares fit of total time over image size ({fit.points} points with "
            f"{fit.files:,} files): {fit.seconds_per_gb:.1f} s per GB + {fit.intercept:.1f} s."
        )
    return "\n\n".join(lines)


def _targets(run: BenchRun) -> str:
    rows = [(row.goal, row.subject, row.measured, row.status.upper()) for row in evaluate(run)]
    return table(("goal", "for", "measured", "status"), rows, "llll")


def _options(options: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in options.items())


def _x(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}x"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"
