"""Sizes people and CI gates talk about: parsing "10MB" / "1.5GiB", and what a registry would store of
the original image's layers and of the slimmed layer (their gzip size), worked out in the background while
the build goes on.

A compressed size is a figure for the report, never worth waiting for: a child process at the lowest CPU
priority estimates it from evenly spread samples (half a second of CPU), or compresses layers no bigger than
the samples whole. Compressing every byte of a 200 MB image would cost ten seconds of CPU that the build's own
stages compete for on a small machine, to change the figure by a few percent. The report says which.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Sequence

from slim import forking
from slim.image.rootfs import CHUNK, LayerTar

UNITS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
# Samples spread evenly over all the layers, SAMPLE bytes each: 16 MiB compressed to estimate. Measured
# against every byte compressed on the 12 fixture images (130 MB to 710 MB): 0.0% to 5.0% over, 2.6% on average
# (a sample compressed alone lacks the bytes before it to refer back to). 128 samples: -3.9% to +6.1%; 64:
# -7.4% to +10.4%.
SAMPLES = 256
SAMPLE = 64 * 1024
MEASURED = "measured"
ESTIMATED = "estimated"
GZIP_LEVEL = 6  # what `docker push` uses, so a compressed size is what a registry would store
LOWEST_PRIORITY = 19  # nice(2): runs when nothing else wants the CPU

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """"10MB" (decimal), "1.5GiB" (binary), "2048" or "2048B" (bytes) -> bytes. ValueError otherwise."""
    match = _SIZE.fullmatch(text)
    unit = match[2].lower() if match else ""
    if not match or unit not in UNITS | {"": 1}:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    return int(float(match[1]) * UNITS.get(unit, 1))


@dataclass(frozen=True)
class LayerSizes:
    """The original image's layers as `docker save` gives them and as a registry would store them."""

    layers: int
    size: int  # uncompressed tar bytes
    compressed_size: int  # gzip at `docker push`'s level, the same way as the slimmed layer
    compressed_by: str = MEASURED  # MEASURED (every byte compressed) or ESTIMATED (from samples)


class BackgroundGzip:
    """Estimate (or, for layers no bigger than the samples, measure) the gzip size of layer tars, in a forked
    copy of this process at the lowest CPU priority: the compressing takes only CPU time the build leaves
    idle, until `hurry()` (the build has nothing else to do) or the build waits for the figure. On a thread
    it took the CPU from the engine and the build's own stages (a redis build was 0.34 s slower than with no
    figure worked out at all), and a thread cannot be given a lower priority: it would hold the interpreter
    lock while the scheduler passed it over.

    `result()` waits for the figure; without a child (none to be had, or one that failed) it is worked out
    here then, raising what that raises. `close()` ends the child, so what it reads can be deleted right
    after; the pipeline's ExitStack calls it on every way out, and there is no result after it."""

    def __init__(self, tars: Sequence[LayerTar]):
        self._tars = tuple(tars)
        self._figure: LayerSizes | None = None
        self._closed = False
        try:
            self._child: forking.Child | None = forking.fork(self._send, niceness=LOWEST_PRIORITY)
        except OSError:  # no process or memory to be had
            self._child = None

    def result(self) -> LayerSizes:
        if self._closed:
            raise RuntimeError("no compressed size: the work was stopped")
        if self._figure is None:
            self._figure = self._received() or gzip_size(self._tars)
        return self._figure

    def hurry(self) -> None:
        """Work it out at this process's priority from now on: when the build has the CPU to spare (it only
        waits on a container), or is about to wait for the figure."""
        if self._child is not None:
            self._child.hurry()

    def close(self) -> None:
        self._closed = True
        if self._child is not None:
            self._child.end()

    def _send(self, output: BinaryIO) -> None:
        pickle.dump(gzip_size(self._tars), output)

    def _received(self) -> LayerSizes | None:
        if self._child is None:
            return None
        self.hurry()  # on a busy machine, the lowest priority could make the build wait for minutes
        try:
            return pickle.load(self._child.output)
        except (EOFError, pickle.UnpicklingError):  # the child stopped short: it failed
            return None
        finally:
            self._child.end()


def gzip_size(tars: Sequence[LayerTar]) -> LayerSizes:
    """The layers' gzip size: compressed whole when no bigger than the samples (the same cost), else estimated."""
    total = sum(tar.size for tar in tars)
    return _measure(tars, total) if measured_whole(total) else _estimate(tars, total)


def _measure(tars: Sequence[LayerTar], total: int) -> LayerSizes:
    compressed = 0
    for tar in tars:
        gzip = pushed_gzip()
        with tar.reader() as data:
            while chunk := data.read(CHUNK):
                compressed += len(gzip.compress(chunk))
        compressed += len(gzip.flush())
    return LayerSizes(len(tars), total, compressed)


def _estimate(tars: Sequence[LayerTar], total: int) -> LayerSizes:
    """Compress SAMPLES chunks taken at even steps through all the layers, and scale their ratio."""
    sampled = compressed = 0
    sizes = [tar.size for tar in tars]
    with contextlib.ExitStack() as readers:
        opened = [readers.enter_context(tar.reader()) for tar in tars]  # one handle per tar, kept
        for offset in sample_offsets(total):
            chunk = _sample(opened, sizes, offset)
            sampled += len(chunk)
            compressed += compressed_alone(chunk)
    return LayerSizes(len(tars), total, scaled(total, sampled, compressed), ESTIMATED)


def _sample(opened: Sequence[BinaryIO], sizes: Sequence[int], offset: int) -> bytes:
    """SAMPLE bytes from byte `offset` of all the layers laid end to end (up to the end of its tar)."""
    for data, size in zip(opened, sizes):
        if offset < size:
            data.seek(offset)
            return data.read(SAMPLE)
        offset -= size
    raise ValueError(f"offset {offset} is past the layers")


def measured_whole(total: int) -> bool:
    """Bytes no more than the samples hold are compressed whole, at the same cost."""
    return total <= SAMPLES * SAMPLE


def sample_offsets(total: int) -> range:
    """Where the SAMPLES samples start: at even steps through `total` bytes."""
    return range(0, total, total // SAMPLES)


def compressed_alone(sample: bytes) -> int:
    gzip = pushed_gzip()
    return len(gzip.compress(sample)) + len(gzip.flush())


def scaled(total: int, sampled: int, compressed: int) -> int:
    """The samples' compression ratio applied to all `total` bytes."""
    return round(total * compressed / sampled)


def human_size(size: int | float | None) -> str:
    """Bytes for people, in decimal units as parse_size reads them: 612 B, 1.5 KB, 23.4 MB; None: "?"."""
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def pushed_gzip():
    """A compressor making what `docker push` uploads: a gzip stream (wbits 31: header with mtime 0, deflate,
    trailer) at the push's level."""
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
