"""Sizes people and CI gates talk about: parsing "10MB" / "1.5GiB", and what a registry would store of
the original image's layers (their gzip size), measured in the background while the build goes on.

The compressed size of the original is a figure for the report, never worth waiting for: a thread
estimates it from evenly spread samples (a second of CPU), or compresses layers no bigger than the samples
whole. Compressing every byte of a 200 MB image would cost ten seconds of CPU that the build's own stages
compete for on a small machine, to change the figure by a fraction of a percent. The report says which.
"""
from __future__ import annotations

import contextlib
import re
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Sequence

from slim.image.rootfs import CHUNK, LayerTar

UNITS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
SAMPLES = 128  # samples spread evenly over all the layers, SAMPLE bytes each: 32 MiB compressed to estimate
SAMPLE = 256 * 1024
MEASURED = "measured"
ESTIMATED = "estimated"
GZIP_LEVEL = 6  # what `docker push` uses, so a compressed size is what a registry would store

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
    """Estimate (or, for layers no bigger than the samples, measure) the gzip size of layer tars on a thread
    while the build goes on (zlib releases the GIL). `close()` stops it early and waits, so the tars can be
    deleted right after; the pipeline's ExitStack calls it on every way out."""

    def __init__(self, tars: Sequence[LayerTar]):
        self._tars = tuple(tars)
        self._sizes = tuple(tar.size for tar in self._tars)
        self._stop = threading.Event()
        self._figure: LayerSizes | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slimtrace-gzip-size", daemon=True)
        self._thread.start()

    def result(self) -> LayerSizes:
        self._thread.join()
        if self._figure is None:
            raise self._error or RuntimeError("no compressed size was measured")
        return self._figure

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            # No bigger than the samples: measured whole, at the same cost.
            self._figure = self._measure() if sum(self._sizes) <= SAMPLES * SAMPLE else self._estimate()
        except BaseException as e:  # handed to the thread that asks for the result
            self._error = e

    def _measure(self) -> LayerSizes | None:
        compressed = 0
        for tar in self._tars:
            gzip = pushed_gzip()
            with tar.reader() as data:
                while chunk := data.read(CHUNK):
                    if self._stop.is_set():
                        return None
                    compressed += len(gzip.compress(chunk))
            compressed += len(gzip.flush())
        return LayerSizes(len(self._tars), sum(self._sizes), compressed)

    def _estimate(self) -> LayerSizes | None:
        """Compress SAMPLES chunks taken at even steps through all the layers, and scale their ratio."""
        total = sum(self._sizes)
        step = total // SAMPLES
        sampled = compressed = 0
        with contextlib.ExitStack() as readers:
            opened = [readers.enter_context(tar.reader()) for tar in self._tars]  # one handle per tar, kept
            for offset in range(0, total, step):
                if self._stop.is_set():
                    return None
                chunk = self._sample(opened, offset)
                gzip = pushed_gzip()
                sampled += len(chunk)
                compressed += len(gzip.compress(chunk)) + len(gzip.flush())
        return LayerSizes(len(self._tars), total, round(total * compressed / sampled), ESTIMATED)

    def _sample(self, opened: Sequence[BinaryIO], offset: int) -> bytes:
        """SAMPLE bytes from byte `offset` of all the layers laid end to end (up to the end of its tar)."""
        for data, size in zip(opened, self._sizes):
            if offset < size:
                data.seek(offset)
                return data.read(SAMPLE)
            offset -= size
        raise ValueError(f"offset {offset} is past the layers")


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
