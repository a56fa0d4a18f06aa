"""The build report: one value that every renderer (terminal, JSON, CI) reads.

The JSON form is a stable contract for CI (versioned by SCHEMA_VERSION, described by
slim/schema/report.schema.json); renderers never compute anything the report does not hold.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from slim import __version__
from slim.errors import UsageError
from .attack_surface import SurfaceCategory, attack_surface
from .json_tree import from_json, to_json
from slim.build.closure import kept_entry
from slim.model import (
    BuiltImage,
    Closure,
    EntryKind,
    ImageFacts,
    InstalledPackage,
    ProbeComparison,
    ReasonKind,
    Trace,
    Verification,
)
from slim.output_file import write_text
from slim.image.package_db import original_packages
from slim.image.rootfs import RootFS
from slim.build.sizes import LayerSizes

SCHEMA_VERSION = 1
LARGEST_REMOVED = 20
VERIFIED, FAILED, SKIPPED = "passed", "failed", "skipped"  # the verification section's status


@dataclass(frozen=True)
class Tool:
    name: str
    version: str


@dataclass(frozen=True)
class Source:
    ref: str
    id: str
    size: int
    files: int
    layers: int | None = None
    layer_size: int | None = None
    compressed_size: int | None = None  # gzip, as a registry stores it
    compressed_by: str | None = None  # MEASURED or ESTIMATED (slim/build/sizes.py)
    read: str = "exported"  # or "in place" (from the engine's storage)


@dataclass(frozen=True, kw_only=True)
class Result:
    id: str
    tag: str | None = None
    size: int
    layer_diff_id: str | None = None
    layer_size: int | None = None
    compressed_size: int | None = None
    compressed_by: str | None = None  # MEASURED or ESTIMATED (slim/build/sizes.py)
    files: int
    entries: int | None = None


@dataclass(frozen=True)
class TraceSummary:
    events: int
    overflow: bool
    complete: bool
    foreign_events: int
    paths: int


@dataclass(frozen=True)
class LookupsSummary:
    traced: bool
    note: str
    calls: int
    paths: int
    in_image: int
    missing: tuple[tuple[str, str, str], ...]  # (path, program, phase) the image lacks
    mechanism: str = ""  # "ebpf" or "seccomp"; "" when not traced (or in a report from before it was said)


@dataclass(frozen=True)
class ProbeRecord:
    probe: str
    ok: bool
    detail: str
    fingerprint: Mapping[str, Any]
    readiness: str
    volatile: Mapping[str, str]  # fingerprint key -> what of it was compared


@dataclass(frozen=True)
class RunSummary:
    mode: str
    exit_code: int | None
    running_after_probes: bool
    listening: tuple[tuple[str, int], ...]
    probes: tuple[ProbeRecord, ...]


@dataclass(frozen=True)
class VerificationSummary:
    status: str  # VERIFIED, FAILED or SKIPPED
    invariant_failures: tuple[str, ...] = ()
    comparisons: tuple[ProbeComparison, ...] = ()
    missing_in_slimmed: tuple[str, ...] = ()

    def json_omitted(self) -> tuple[str, ...]:
        return ("invariant_failures", "comparisons", "missing_in_slimmed") if self.status == SKIPPED else ()


@dataclass(frozen=True)
class Options:
    include_paths: tuple[str, ...]
    exclude_paths: tuple[str, ...]
    no_rules: tuple[str, ...]
    app_files: str
    package_db: bool


@dataclass(frozen=True)
class Volume:
    path: str
    files: int
    bytes: int
    note: str


@dataclass(frozen=True)
class PackageDatabase:
    database: str  # "trimmed" or "removed"
    note: str
    original: int
    kept: int
    kept_packages: tuple[InstalledPackage, ...]
    removed_packages: tuple[InstalledPackage, ...]
    unsupported: tuple[str, ...]


@dataclass(frozen=True)
class SbomSummary:
    path: str
    in_image: str | None
    format: str
    components: int


@dataclass(frozen=True)
class Totals:
    files: int
    bytes: int
    bytes_by_top_dir: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RemovedFile:
    path: str
    size: int


@dataclass(frozen=True)
class Removed(Totals):
    largest: tuple[RemovedFile, ...] = ()


@dataclass(frozen=True)
class ReasonRecord:
    kind: str  # a ReasonKind value (a newer report may hold one this version does not know)
    source: str = ""
    detail: str = ""


@dataclass(frozen=True)
class KeptEntry:
    path: str
    kind: str  # an EntryKind value
    size: int
    reasons: tuple[ReasonRecord, ...]
    target: str | None = None  # symlinks only

    def json_omitted(self) -> tuple[str, ...]:
        return () if self.kind == EntryKind.SYMLINK.value else ("target",)


@dataclass(frozen=True, kw_only=True)
class Report:
    """The build report as the JSON has it, section by section (a section an older report lacks is None or
    empty). `to_json` gives the JSON value of slim/schema/report.schema.json."""

    schema_version: int = SCHEMA_VERSION
    tool: Tool | None = None
    source: Source
    result: Result
    reduction_ratio: float | None = None
    trace: TraceSummary | None = None
    lookups: LookupsSummary | None = None
    run: RunSummary | None = None
    verification: VerificationSummary
    options: Options | None = None
    bytes_by_reason: Mapping[str, int] = field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    packages: PackageDatabase | None = None
    sbom: SbomSummary | None = None
    attack_surface: tuple[SurfaceCategory, ...] = ()
    kept_totals: Totals | None = None
    removed: Removed
    warnings: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    kept: tuple[KeptEntry, ...]
    # Enough to answer `slim explain` for any removed path, one line per entry: [path, size] and
    # [path, symlink target].
    removed_files: tuple[tuple[str, int], ...] | None = None  # None: a report from before these listings
    removed_symlinks: tuple[tuple[str, str], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return from_json(cls, data)

    def write(self, path: Path) -> None:
        """Atomically where the path allows it, so a CI step never reads half a report."""
        write_text(path, json_text(self.to_json()) + "\n")

    @classmethod
    def load(cls, path: Path) -> Report:
        """A report given on the command line: anything that is not one is a usage error, in one line."""
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise InvalidReport(path, e.strerror or str(e)) from e
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidReport(path, f"not JSON ({e})") from e
        if not isinstance(data, dict) or "schema_version" not in data:
            raise InvalidReport(path, "not a slimtrace build report (no schema_version)")
        if data["schema_version"] != SCHEMA_VERSION:
            raise InvalidReport(path, f"schema version {data['schema_version']!r}; this slimtrace reads {SCHEMA_VERSION}")
        missing = [key for key in ("source", "result", "verification", "kept", "removed") if key not in data]
        if missing:
            raise InvalidReport(path, f"incomplete report: no {', '.join(missing)}")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, AttributeError) as e:
            raise InvalidReport(path, f"not a slimtrace build report ({type(e).__name__}: {e})") from e


class InvalidReport(UsageError):
    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")


def json_text(value: Any, depth: int = 0) -> str:
    """Indented JSON of JSON values (dicts, lists, plain values), except that a list of plain values stays on
    one line: the removed-file pairs ["/usr/bin/perl", 3804464] then take one line each, which keeps big
    reports readable and small."""
    pad = "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = (f"{pad}{json.dumps(key)}: {json_text(item, depth + 1)}" for key, item in value.items())
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = (f"{pad}{json_text(item, depth + 1)}" for item in value)
    else:
        return json.dumps(value)
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    return opening + "\n" + ",\n".join(items) + "\n" + "  " * depth + closing


def build_report(
    facts: ImageFacts,
    rootfs: RootFS,
    trace: Trace,
    closure: Closure,
    built: BuiltImage,
    tag: str | None,
    verification: Verification | None,
    timings: Mapping[str, float],
    source_layers: LayerSizes | None = None,
    read_in_place: bool = False,
    include_paths: Iterable[PurePosixPath] = (),
    exclude_paths: Iterable[PurePosixPath] = (),
    disabled_rules: Iterable[str] = (),
    app_files: str = "all",
    sbom: Mapping[str, Any] | None = None,
) -> Report:
    kept = _kept_files(rootfs, closure)
    removed_files = _removed(rootfs, closure, EntryKind.FILE)  # one pass over the image for both sections
    return Report(
        tool=Tool("slimtrace", __version__),
        source=Source(
            ref=facts.ref,
            id=facts.id,
            size=facts.size,
            files=sum(1 for entry in rootfs.entries.values() if entry.kind is EntryKind.FILE),
            layers=source_layers.layers if source_layers else None,
            layer_size=source_layers.size if source_layers else None,
            compressed_size=source_layers.compressed_size if source_layers else None,
            compressed_by=source_layers.compressed_by if source_layers else None,
            read="in place" if read_in_place else "exported",
        ),
        result=Result(
            id=built.id,
            tag=tag,
            size=built.size,
            layer_diff_id=built.layer_diff_id,
            layer_size=built.layer_size,
            compressed_size=built.compressed_size,
            compressed_by=built.compressed_by,
            files=sum(1 for item in kept if item.kind == EntryKind.FILE.value),
            entries=built.files,
        ),
        reduction_ratio=round(facts.size / built.size, 2) if built.size else None,
        trace=TraceSummary(
            events=trace.health.events,
            overflow=trace.health.overflow,
            complete=trace.health.complete,
            foreign_events=trace.health.foreign_events,
            paths=len(trace.paths),
        ),
        lookups=_lookups_section(trace, rootfs),
        run=_run_section(trace),
        verification=verification_section(verification),
        options=Options(
            include_paths=tuple(str(path) for path in include_paths),
            exclude_paths=tuple(str(path) for path in exclude_paths),
            no_rules=tuple(sorted(disabled_rules)),
            app_files=app_files,
            package_db=closure.packages is not None,
        ),
        bytes_by_reason=_bytes_by_reason(kept),
        volumes=_volumes_section(kept),
        packages=_packages_section(rootfs, closure),
        sbom=SbomSummary(**sbom) if sbom else None,
        attack_surface=attack_surface(rootfs, closure.kept),
        kept_totals=_kept_totals(kept),
        removed=_removed_section(removed_files),
        warnings=tuple(closure.warnings),
        timings=dict(timings),
        kept=kept,
        removed_files=tuple((str(e.path), e.size) for e in removed_files),
        removed_symlinks=tuple((str(e.path), e.link_target) for e in _removed(rootfs, closure, EntryKind.SYMLINK)),
    )


def _kept_files(rootfs: RootFS, closure: Closure) -> tuple[KeptEntry, ...]:
    items = []
    for path in sorted(closure.kept):
        entry = kept_entry(rootfs, closure, path)
        if entry is None:
            continue
        reasons = tuple(ReasonRecord(r.kind.value, r.source, r.detail) for r in closure.kept[path])
        target = entry.link_target if entry.kind is EntryKind.SYMLINK else None
        items.append(KeptEntry(str(path), entry.kind.value, entry.size, reasons, target))
    return tuple(items)


def _kept_totals(kept: tuple[KeptEntry, ...]) -> Totals:
    files = [item for item in kept if item.kind == EntryKind.FILE.value]
    by_top: Counter[str] = Counter()
    for item in files:
        by_top[_top_dir(PurePosixPath(item.path))] += item.size
    return Totals(files=len(files), bytes=sum(item.size for item in files), bytes_by_top_dir=dict(sorted(by_top.items())))


def _packages_section(rootfs: RootFS, closure: Closure) -> PackageDatabase:
    """The OS packages scanners will find: the kept ones, with the database entries the original has."""
    original = original_packages(rootfs)
    if closure.packages is None:
        return PackageDatabase(
            database="removed",
            note="--no-package-db: the slimmed image has no package database, so vulnerability scanners "
            "find no packages in it and report nothing: not because it has no vulnerabilities",
            original=len(original),
            kept=0,
            kept_packages=(),
            removed_packages=(),
            unsupported=(),
        )
    summary = closure.packages
    return PackageDatabase(
        database="trimmed",
        note="the slimmed image holds the original database entries of the kept packages, their file lists "
        "trimmed to the kept files, and their copyright files",
        original=len(original),
        kept=len(summary.kept),
        kept_packages=tuple(summary.kept),
        removed_packages=tuple(summary.removed),
        unsupported=tuple(
            f"{path}: rpm databases are not read; scanners will see no rpm package" for path in summary.unsupported
        ),
    )


def _removed(rootfs: RootFS, closure: Closure, kind: EntryKind) -> list:
    return [entry for path, entry in rootfs.entries.items() if path not in closure.kept and entry.kind is kind]


def _bytes_by_reason(kept: tuple[KeptEntry, ...]) -> dict[str, int]:
    """Bytes attributed to each file's main (first) reason, so a user sees what each rule costs."""
    totals: Counter[str] = Counter()
    for item in kept:
        totals[item.reasons[0].kind] += item.size
    return dict(sorted(totals.items()))


def _volumes_section(kept: tuple[KeptEntry, ...]) -> tuple[Volume, ...]:
    """What the image ships under each declared VOLUME: kept whole as the volume's seed data."""
    counts: dict[str, list[int]] = {}
    for item in kept:
        for reason in item.reasons:
            if reason.kind == ReasonKind.VOLUME.value:
                files_and_bytes = counts.setdefault(reason.source, [0, 0])
                if item.kind == EntryKind.FILE.value:
                    files_and_bytes[0] += 1
                    files_and_bytes[1] += item.size
    note = "seed data: Docker copies it into the volume at first start (opens there are not traced), kept whole"
    return tuple(Volume(path, files, size, note) for path, (files, size) in sorted(counts.items()))


def _removed_section(removed_files: list) -> Removed:
    removed = sorted(removed_files, key=lambda entry: (-entry.size, str(entry.path)))
    by_top: Counter[str] = Counter()
    for entry in removed:
        by_top[_top_dir(entry.path)] += entry.size
    return Removed(
        files=len(removed),
        bytes=sum(entry.size for entry in removed),
        bytes_by_top_dir=dict(sorted(by_top.items())),
        largest=tuple(RemovedFile(str(entry.path), entry.size) for entry in removed[:LARGEST_REMOVED]),
    )


def _top_dir(path: PurePosixPath) -> str:
    return "/" + path.parts[1] if len(path.parts) > 2 else "/"


def _lookups_section(trace: Trace, rootfs: RootFS) -> LookupsSummary:
    """What the lookup tracer saw; the paths the image lacks are listed (for `slim explain`), never kept."""
    missing: dict[str, tuple[str, str, str]] = {}
    for lookup in trace.lookups:
        if not rootfs.resolve(lookup.path, follow_last=lookup.follow).exists:
            missing.setdefault(str(lookup.path), (str(lookup.path), lookup.program, lookup.phase))
    health = trace.lookup_health
    looked_up = {lookup.path for lookup in trace.lookups}
    return LookupsSummary(
        traced=health.traced,
        mechanism=health.mechanism,
        note=health.note,
        calls=health.calls,
        paths=len(looked_up),
        in_image=len(looked_up - {PurePosixPath(path) for path in missing}),
        missing=tuple(sorted(missing.values())),
    )


def _run_section(trace: Trace) -> RunSummary:
    run = trace.run
    return RunSummary(
        mode=run.mode,
        exit_code=run.exit_code,
        running_after_probes=run.running_after_probes,
        listening=tuple(run.listening),
        probes=tuple(
            ProbeRecord(
                probe=p.probe,
                ok=p.ok,
                detail=p.detail,
                fingerprint=dict(p.fingerprint),
                readiness=p.readiness,
                volatile={key: stable.compared for key, stable in p.volatile.items()},
            )
            for p in run.probes
        ),
    )


def verification_section(verification: Verification | None) -> VerificationSummary:
    """The report's verification section; `slim verify --json` prints the same shape."""
    if verification is None:
        return VerificationSummary(SKIPPED)
    return VerificationSummary(
        status=VERIFIED if verification.passed else FAILED,
        invariant_failures=tuple(verification.invariant_failures),
        comparisons=tuple(verification.comparisons),
        missing_in_slimmed=tuple(verification.missing_in_slimmed),
    )
