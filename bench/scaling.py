"""Scaling: what a build costs as images grow, on synthetic images of known size and file count.

Each image is the fixture base plus FILES files of random (incompressible) bytes, BYTES in all, 1,000 per
directory under /data. Its app is a batch job that reads three of them (sha256sum), so what is kept
stays small while the image grows: the cost that grows is reading the image, not writing the result.

Two series share the 1k-file, 100 MB point: file count (1k, 10k, 100k files of 100 MB in all) and bytes
(100 MB, 1 GB, 5 GB in 1k files).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import docker
import docker.errors

import fixtures

from .engine_turns import engine_turn, remove_image
from .measure import slim_build
from .model import ScalingPoint
from .stats import floor_bytes

REPOSITORY = "slimtrace-bench/synthetic"
FILES_PER_DIRECTORY = 1000
# The image's layer, the build container's copy while it commits, and slim's spooled copy of the layers.
DISK_COPIES = 3
DISK_MARGIN = 2_000_000_000

GENERATE = f"""#!/bin/sh
# generate-data FILES BYTES: FILES files of random bytes, BYTES in all, {FILES_PER_DIRECTORY} a directory under /data.
set -eu
files=$1
bytes=$2
size=$((bytes / files))
dirs=$(((files + {FILES_PER_DIRECTORY - 1}) / {FILES_PER_DIRECTORY}))
per_dir=$((files / dirs))
d=0
while [ "$d" -lt "$dirs" ]; do
    dir=$(printf '/data/%03d' "$d")
    mkdir -p "$dir"
    head -c $((per_dir * size)) /dev/urandom | split -b "$size" -a 4 -d - "$dir/f"
    d=$((d + 1))
done
"""

DOCKERFILE = """FROM {base}
COPY generate-data /usr/local/bin/generate-data
RUN sh /usr/local/bin/generate-data {files} {bytes}
# The app: a batch job that reads three of the files.
CMD ["sha256sum", "/data/000/f0000", "/data/000/f0001", "/data/000/f0002"]
"""


@dataclass(frozen=True)
class Size:
    files: int
    bytes: int

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}:{self.files}f-{_short(self.bytes)}"


FULL = (Size(1_000, 100_000_000), Size(10_000, 100_000_000), Size(100_000, 100_000_000),
        Size(1_000, 1_000_000_000), Size(1_000, 5_000_000_000))
QUICK = (Size(1_000, 100_000_000), Size(10_000, 100_000_000), Size(1_000, 1_000_000_000))


def dockerfile(base: str, size: Size) -> str:
    return DOCKERFILE.format(base=base, files=size.files, bytes=size.bytes)


def measure(
    client: docker.DockerClient, source: Path, sizes: tuple[Size, ...], workdir: Path, keep: bool,
    progress: Callable[[str], None],
) -> list[ScalingPoint]:
    """One point per size; `source` is the slimtrace snapshot to build with (bench.measure.slim_build)."""
    base = fixtures.ensure(client, fixtures.BASE_NAME)
    return [_measure_one(client, source, base, size, workdir, keep, progress) for size in sizes]


def _measure_one(
    client: docker.DockerClient, source: Path, base: str, size: Size, workdir: Path, keep: bool,
    progress: Callable[[str], None],
) -> ScalingPoint:
    point = ScalingPoint(files=size.files, target_bytes=size.bytes, image=size.tag)
    slim_tag = f"{REPOSITORY}.slim:{size.files}f-{_short(size.bytes)}"
    try:
        with engine_turn():
            progress(f"scaling {size.files:,} files, {_short(size.bytes)}: image")
            built_in = _ensure_image(client, base, size)
            point = replace(point, image_build_seconds=built_in,
                            image_size=int(client.api.inspect_image(size.tag)["Size"]))
            progress(f"scaling {size.files:,} files, {_short(size.bytes)}: slim build")
            build = slim_build(source, size.tag, slim_tag, workdir / f"synthetic-{size.files}-{size.bytes}.json")
        report = build.report or {}
        return replace(
            point,
            slimmed_size=report.get("result", {}).get("size"),
            floor=floor_bytes(report) if report else None,
            verification=report.get("verification", {}).get("status", "not run"),
            timings=build.timings,
            wall_seconds=build.wall_seconds,
            peak_rss=build.peak_rss,
            error=build.error,
        )
    except Exception as error:  # one point failing must not lose the others
        return replace(point, error=f"{type(error).__name__}: {error}"[:300])
    finally:
        remove_image(client, slim_tag)
        if not keep:
            remove_image(client, size.tag)


def _ensure_image(client: docker.DockerClient, base: str, size: Size) -> float | None:
    """Build the synthetic image unless it exists (kept by --keep); seconds the build took, None if reused."""
    try:
        client.images.get(size.tag)
        return None
    except docker.errors.ImageNotFound:
        pass
    _check_disk(client, size)
    with tempfile.TemporaryDirectory(prefix="slimtrace-bench-synthetic-") as context:
        (Path(context) / "generate-data").write_text(GENERATE)
        (Path(context) / "Dockerfile").write_text(dockerfile(base, size))
        started = time.monotonic()
        client.images.build(path=context, tag=size.tag, rm=True, forcerm=True, pull=False)
        return time.monotonic() - started


def _check_disk(client: docker.DockerClient, size: Size) -> None:
    needed = DISK_COPIES * size.bytes + DISK_MARGIN
    for where in {client.info().get("DockerRootDir", "/var/lib/docker"), tempfile.gettempdir()}:
        free = shutil.disk_usage(where).free
        if free < needed:
            raise RuntimeError(f"{where} has {free / 1e9:.1f} GB free; this image needs about {needed / 1e9:.1f} GB")


def _short(size: int) -> str:
    """100MB, 1GB, 5GB: for tags and progress lines."""
    return f"{size / 1e9:g}GB" if size >= 1_000_000_000 else f"{size / 1e6:g}MB"
