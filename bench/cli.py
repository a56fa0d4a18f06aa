"""python -m bench: measure the corpus, the tracing overhead and the scaling; write bench/results/.

Progress goes to stderr; the markdown tables go to stdout and to bench/results/<date>.md and latest.md.
A part that fails (an image that will not slim, wrk missing mid-run) is recorded in the results and the
run goes on; the exit code is 0 unless bench itself could not run. Targets are reported, never enforced.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import docker

import fixtures
from slim.adapters.c_helpers import cache_dir, gate_binary, lookupd_binary
from slim.adapters.docker_engine import DockerEngine
from slim.static_analysis.scancache import CACHE_NAME

from . import chart, corpus, overhead, scaling
from .engine_turns import engine_turn, remove_image
from .machine import SLIM_ROOT, describe
from .measure import slim_build, snapshot_sources
from .model import BenchRun, ImageResult
from .render import markdown, to_json
from .stats import floor_bytes, median_index

RESULTS_DIR = Path(__file__).parent / "results"
SLIM_REPOSITORY = "slimtrace-bench"
DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 3
# Builds of each corpus image: on a small shared machine one build's wall time is off by up to a quarter
# (nodeapp measured 6.0 s once where 4 alternating builds gave a median of 4.8 s).
DEFAULT_BUILDS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark slimtrace: sizes and build costs over the fixture corpus, tracing overhead "
                    "under wrk, and scaling over synthetic images. Needs root and the Docker engine.",
    )
    parser.add_argument("--only", action="append", default=[], metavar="NAMES",
                        help=f"comma-separated corpus images to measure (default: all of {','.join(corpus.NAMES)}); "
                             "repeatable")
    parser.add_argument("--rounds", type=_positive, default=None, metavar="N",
                        help=f"overhead rounds, each one untraced and one traced wrk run "
                             f"(default {DEFAULT_ROUNDS}; {QUICK_ROUNDS} with --quick)")
    parser.add_argument("--builds", type=_positive, default=None, metavar="N",
                        help=f"builds of each corpus image; the one of median wall time is reported "
                             f"(default {DEFAULT_BUILDS}; 1 with --quick)")
    parser.add_argument("--skip-overhead", action="store_true", help="do not measure the tracing overhead")
    parser.add_argument("--skip-scaling", action="store_true", help="do not measure the synthetic images")
    parser.add_argument("--quick", action="store_true",
                        help="scaling on 1k/10k files and 0.1/1 GB only (no 100k files, no 5 GB), fewer rounds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the synthetic and slimmed images (a later run reuses the synthetic ones)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help=f"where the results go (default: {RESULTS_DIR})")
    arguments = parser.parse_args(argv)
    names = [name for value in arguments.only for name in value.split(",") if name]
    unknown = sorted(set(names) - set(corpus.NAMES))
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(corpus.NAMES)}")
    arguments.names = tuple(name for name in corpus.NAMES if name in names) if names else corpus.NAMES
    if arguments.rounds is None:
        arguments.rounds = QUICK_ROUNDS if arguments.quick else DEFAULT_ROUNDS
    if arguments.builds is None:
        arguments.builds = 1 if arguments.quick else DEFAULT_BUILDS
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_args(argv)
    problem = _preflight(arguments)
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        sys.exit(2)
    client = docker.from_env(timeout=600)
    engine = DockerEngine(client)
    progress = _Progress()
    date = datetime.now(timezone.utc).replace(microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="slimtrace-bench-"))
    try:
        _own_cache(workdir / "cache")
        source = snapshot_sources(SLIM_ROOT, workdir / "source")
        run = BenchRun(date=date.isoformat(), machine=describe(client, source), options=_options(arguments))
        tags = _build_corpus(client, arguments.names, progress)
        run = replace(run, images=tuple(
            _measure_image(client, engine, source, item, tags.get(item.name), workdir, arguments, progress)
            for item in corpus.CORPUS if item.name in arguments.names
        ))
        if not arguments.skip_overhead:
            run = _measure_overhead(client, engine, run, arguments.rounds, progress)
        if not arguments.skip_scaling:
            sizes = scaling.QUICK if arguments.quick else scaling.FULL
            points = scaling.measure(client, source, sizes, workdir, arguments.keep, progress)
            run = replace(run, scaling=tuple(points))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run = replace(run, total_seconds=round(progress.elapsed(), 1))
    written = write_results(run, arguments.results, date.strftime("%Y-%m-%d"))
    print(markdown(run, _chart_name(written)))
    for path in written:
        progress(f"wrote {path}")


def write_results(run: BenchRun, directory: Path, stem: str) -> list[Path]:
    """<stem>.json, <stem>.md, latest.md and, when there is scaling data, <stem>-scaling.png."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    chart_path = directory / f"{stem}-scaling.png"
    if run.scaling and chart.available():
        if chart.scaling_chart(run.scaling, chart_path, f"slimtrace build cost on synthetic images, {stem}"):
            written.append(chart_path)
    chart_name = chart_path.name if chart_path in written else None
    json_path = directory / f"{stem}.json"
    json_path.write_text(json.dumps(to_json(run), indent=2) + "\n")
    text = markdown(run, chart_name)
    for path in (directory / f"{stem}.md", directory / "latest.md"):
        path.write_text(text)
    return [json_path, directory / f"{stem}.md", directory / "latest.md", *written]


def _preflight(arguments: argparse.Namespace) -> str | None:
    if os.geteuid() != 0:
        return "bench needs root: slimtrace traces with fanotify"
    if not arguments.skip_overhead and shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install wrk, or bash scripts/setup.sh); or pass --skip-overhead"
    try:
        docker.from_env().ping()
    except docker.errors.DockerException as error:
        return f"cannot reach the Docker engine: {error}"
    return None


def _build_corpus(client: docker.DockerClient, names: tuple[str, ...], progress: "_Progress") -> dict[str, str]:
    """Fixture tags by name, building what the engine lacks (the first run; later runs reuse the images)."""
    tags = {}
    for name in names:
        progress(f"corpus image {name}")
        try:
            with engine_turn():
                tags[name] = fixtures.ensure(client, name)
        except fixtures.FixtureError as error:
            progress(f"{name}: {error}")
    return tags


def _measure_image(
    client: docker.DockerClient, engine: DockerEngine, source: Path, item: corpus.CorpusImage, image: str | None,
    workdir: Path, arguments: argparse.Namespace, progress: "_Progress",
) -> ImageResult:
    result = ImageResult(name=item.name, image=image or "", kind=item.kind)
    if image is None:
        return replace(result, error="the fixture image could not be built")
    slim_tag = f"{SLIM_REPOSITORY}/{item.name}.slim:latest"
    try:
        builds = []
        for number in range(arguments.builds):
            with engine_turn():
                progress(f"{item.name}: slim build {number + 1}/{arguments.builds}")
                _forget_parsed_sources()
                # --keep-unverified: when verification fails, bench's own check still gets an image to look at.
                builds.append(slim_build(
                    source, image, slim_tag, workdir / f"{item.name}.json", ("--keep-unverified", *item.slim_args)
                ))
        build = builds[median_index([build.wall_seconds for build in builds])]
        report = build.report or {}
        result = replace(
            result,
            original_size=report.get("source", {}).get("size"),
            original_files=report.get("source", {}).get("files"),
            slimmed_size=report.get("result", {}).get("size"),
            layer_size=report.get("result", {}).get("layer_size"),
            compressed_size=report.get("result", {}).get("compressed_size"),
            files_kept=report.get("result", {}).get("files"),
            floor=floor_bytes(report) if report else None,
            verification=report.get("verification", {}).get("status", "not run"),
            timings=build.timings,
            wall_seconds=round(build.wall_seconds, 3),
            wall_runs=tuple(round(build.wall_seconds, 3) for build in builds),
            peak_rss=build.peak_rss,
            error=build.error,
        )
        if report.get("result", {}).get("tag"):
            with engine_turn():
                progress(f"{item.name}: functional check")
                ok, detail = corpus.compare(item.check, engine, image, slim_tag)
            result = replace(result, functional=detail, functional_ok=ok)
        return result
    except Exception as error:  # one image failing must not lose the others
        return replace(result, error=f"{type(error).__name__}: {error}"[:300])
    finally:
        if not arguments.keep:
            remove_image(client, slim_tag)


def _measure_overhead(
    client: docker.DockerClient, engine: DockerEngine, run: BenchRun, rounds: int, progress: "_Progress"
) -> BenchRun:
    try:
        with engine_turn():
            image = fixtures.ensure(client, "nginx")
        return replace(run, overhead=overhead.measure(engine, image, rounds, progress))
    except Exception as error:
        return replace(run, overhead_error=f"{type(error).__name__}: {error}"[:300])


def _own_cache(directory: Path) -> None:
    """slimtrace's cache for everything measured here (XDG_CACHE_HOME, which the builds inherit), holding the
    compiled gate and lookup supervisor, as after a user's first build. The user's own cache is left alone."""
    os.environ["XDG_CACHE_HOME"] = str(directory)
    gate_binary()
    lookupd_binary()


def _forget_parsed_sources() -> None:
    """Every build measured is a first one for the app's Python sources, as on a fresh CI runner: the cache
    of parsed imports (which makes a second build of a Python app faster) starts empty."""
    for path in cache_dir().glob(f"{CACHE_NAME}*"):
        path.unlink()


def _options(arguments: argparse.Namespace) -> dict:
    return {
        "images": ",".join(arguments.names),
        "builds": arguments.builds,
        "rounds": arguments.rounds,
        "overhead": not arguments.skip_overhead,
        "scaling": "skipped" if arguments.skip_scaling else ("quick" if arguments.quick else "full"),
    }


def _chart_name(written: list[Path]) -> str | None:
    return next((path.name for path in written if path.suffix == ".png"), None)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


class _Progress:
    """`[mm:ss] message` lines on stderr."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        seconds = int(self.elapsed())
        print(f"[{seconds // 60:02d}:{seconds % 60:02d}] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self._started
