"""`slim report`: build reports side by side. One Comparison value feeds the text, markdown, HTML and JSON
renderers; it only picks from the reports (and divides, for ratios), so every renderer shows the same numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .ci_gates import GateOutcome
from .report import PackageDatabase, Report

LARGEST_REMOVED = 10


@dataclass(frozen=True)
class DirBytes:
    path: str  # a top-level directory, "/" for files directly in the root
    kept: int
    removed: int


@dataclass(frozen=True)
class SurfaceRow:
    """One attack-surface category: how many of its files the original had, and which the slimmed keeps."""

    label: str
    original: int
    slimmed: tuple[str, ...]


@dataclass(frozen=True)
class Packages:
    database: str  # "trimmed": the kept packages' entries; "removed": --no-package-db
    original: int
    kept: int
    note: str


@dataclass(frozen=True)
class ImageSummary:
    image: str
    report: str  # the report file it came from
    original_id: str
    slimmed_id: str
    slimmed_tag: str | None
    original_size: int
    slimmed_size: int
    ratio: float | None
    original_compressed: int | None  # gzip of the layers, as a registry stores them
    slimmed_compressed: int | None
    compressed_ratio: float | None
    original_files: int
    slimmed_files: int
    verification: str  # passed, failed, skipped
    checks: int
    warnings: int
    dirs: tuple[DirBytes, ...]
    largest_removed: tuple[tuple[str, int], ...]
    surface: tuple[SurfaceRow, ...] = ()  # empty for reports written before issue 12
    packages: Packages | None = None
    original_compressed_by: str | None = None  # MEASURED or ESTIMATED (slim/build/sizes.py)
    slimmed_compressed_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "report": self.report,
            "original": {"id": self.original_id, "size": self.original_size,
                         "compressed_size": self.original_compressed, "compressed_by": self.original_compressed_by,
                         "files": self.original_files},
            "slimmed": {"id": self.slimmed_id, "tag": self.slimmed_tag, "size": self.slimmed_size,
                        "compressed_size": self.slimmed_compressed, "compressed_by": self.slimmed_compressed_by,
                        "files": self.slimmed_files},
            "ratio": self.ratio,
            "compressed_ratio": self.compressed_ratio,
            "verification": self.verification,
            "checks": self.checks,
            "warnings": self.warnings,
            "bytes_by_top_dir": [{"dir": d.path, "kept": d.kept, "removed": d.removed} for d in self.dirs],
            "largest_removed": [{"path": path, "size": size} for path, size in self.largest_removed],
            "attack_surface": [asdict(row) for row in self.surface],
            "packages": asdict(self.packages) if self.packages else None,
        }


@dataclass(frozen=True)
class Comparison:
    images: tuple[ImageSummary, ...]
    gates: tuple[GateOutcome, ...] = ()  # one per image when gates were asked for

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "images": [image.as_dict() for image in self.images],
            "gates": [outcome.as_dict() for outcome in self.gates],
        }


def summarise(report: Report, path: Path | str) -> ImageSummary:
    source, result, removed = report.source, report.result, report.removed
    kept_by_dir = report.kept_totals.bytes_by_top_dir if report.kept_totals else {}
    dirs = sorted(set(kept_by_dir) | set(removed.bytes_by_top_dir))
    return ImageSummary(
        image=source.ref,
        report=str(path),
        original_id=source.id,
        slimmed_id=result.id,
        slimmed_tag=result.tag,
        original_size=source.size,
        slimmed_size=result.size,
        ratio=report.reduction_ratio,
        original_compressed=source.compressed_size,
        slimmed_compressed=result.compressed_size,
        compressed_ratio=_ratio(source.compressed_size, result.compressed_size),
        original_files=source.files,
        slimmed_files=result.files,
        verification=report.verification.status,
        checks=len(report.verification.comparisons),
        warnings=len(report.warnings),
        dirs=tuple(DirBytes(d, kept_by_dir.get(d, 0), removed.bytes_by_top_dir.get(d, 0)) for d in dirs),
        largest_removed=tuple((item.path, item.size) for item in removed.largest[:LARGEST_REMOVED]),
        surface=tuple(SurfaceRow(c.label, len(c.original), c.slimmed) for c in report.attack_surface),
        packages=_packages(report.packages),
        original_compressed_by=source.compressed_by,
        slimmed_compressed_by=result.compressed_by,
    )


def _packages(section: PackageDatabase | None) -> Packages | None:
    if not section:
        return None
    return Packages(section.database, section.original, section.kept, section.note)


def compare(reports: Sequence[tuple[Path | str, Report]], gates: Sequence[GateOutcome] = ()) -> Comparison:
    return Comparison(tuple(summarise(report, path) for path, report in reports), tuple(gates))


def _ratio(original: int | None, slimmed: int | None) -> float | None:
    return round(original / slimmed, 2) if original and slimmed else None
