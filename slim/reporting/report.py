"""The build report: one value that every renderer (terminal, JSON, CI) reads.

The JSON form is a stable contract for CI (versioned by SCHEMA_VERSION, described by
slim/schema/report.schema.json); renderers never compute anything the report does not hold.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from slim import __version__
from slim.errors import UsageError
from .attack_surface import attack_surface
from slim.build.closure import kept_entry
from slim.model import BuiltImage, Closure, EntryKind, ImageFacts, ReasonKind, Trace, Verification
from slim.output_file import write_text
from slim.image.package_db import original_packages
from slim.image.rootfs import RootFS
from slim.build.sizes import LayerSizes

SCHEMA_VERSION = 1
LARGEST_REMOVED = 20


@dataclass(frozen=True)
class Report:
    data: Mapping[str, Any]

    def write(self, path: Path) -> None:
        """Atomically where the path allows it, so a CI step never reads half a report."""
        write_text(path, json_text(self.data) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Report":
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
        return cls(data)


class InvalidReport(UsageError):
    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")


def json_text(value: Any, depth: int = 0) -> str:
    """Indented JSON, except that a list of plain values stays on one line: the removed-file pairs
    ["/usr/bin/perl", 3804464] then take one line each, which keeps big reports readable and small."""
    pad = "  " * (depth + 1)
    if isinstance(value, Mapping) and value:
        items = (f"{pad}{json.dumps(key)}: {json_text(item, depth + 1)}" for key, item in value.items())
    elif isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        items = (f"{pad}{json_text(item, depth + 1)}" for item in value)
    else:
        return json.dumps(value)
    opening, closing = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
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
    return Report(
        {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "slimtrace", "version": __version__},
            "source": {
                "ref": facts.ref,
                "id": facts.id,
                "size": facts.size,
                "files": sum(1 for entry in rootfs.entries.values() if entry.kind is EntryKind.FILE),
                "layers": source_layers.layers if source_layers else None,
                "layer_size": source_layers.size if source_layers else None,
                "compressed_size": source_layers.compressed_size if source_layers else None,
                "compressed_by": source_layers.compressed_by if source_layers else None,
                "read": "in place" if read_in_place else "exported",
            },
            "result": {
                "id": built.id,
                "tag": tag,
                "size": built.size,
                "layer_diff_id": built.layer_diff_id,
                "layer_size": built.layer_size,
                "compressed_size": built.compressed_size,
                "files": sum(1 for item in kept if item["kind"] == EntryKind.FILE.value),
                "entries": built.files,
            },
            "reduction_ratio": round(facts.size / built.size, 2) if built.size else None,
            "trace": {
                "events": trace.health.events,
                "overflow": trace.health.overflow,
                "complete": trace.health.complete,
                "foreign_events": trace.health.foreign_events,
                "paths": len(trace.paths),
            },
            "lookups": _lookups_section(trace, rootfs),
            "run": _run_section(trace),
            "verification": verification_section(verification),
            "options": {
                "include_paths": [str(path) for path in include_paths],
                "exclude_paths": [str(path) for path in exclude_paths],
                "no_rules": sorted(disabled_rules),
                "app_files": app_files,
                "package_db": closure.packages is not None,
            },
            "bytes_by_reason": _bytes_by_reason(kept),
            "volumes": _volumes_section(kept),
            "packages": _packages_section(rootfs, closure),
            "sbom": dict(sbom) if sbom else None,
            "attack_surface": [asdict(category) for category in attack_surface(rootfs, closure.kept)],
            "kept_totals": _kept_totals(kept),
            "removed": _removed_section(rootfs, closure),
            "warnings": list(closure.warnings),
            "timings": dict(timings),
            "kept": kept,
            # Enough to answer `slim explain` for any removed path, one line per entry: [path, size] and
            # [path, symlink target].
            "removed_files": [[str(e.path), e.size] for e in _removed(rootfs, closure, EntryKind.FILE)],
            "removed_symlinks": [[str(e.path), e.link_target] for e in _removed(rootfs, closure, EntryKind.SYMLINK)],
        }
    )


def _kept_files(rootfs: RootFS, closure: Closure) -> list[dict[str, Any]]:
    items = []
    for path in sorted(closure.kept):
        entry = kept_entry(rootfs, closure, path)
        if entry is None:
            continue
        item = {
            "path": str(path),
            "kind": entry.kind.value,
            "size": entry.size,
            "reasons": [
                {"kind": r.kind.value, "source": r.source, "detail": r.detail} for r in closure.kept[path]
            ],
        }
        if entry.kind is EntryKind.SYMLINK:
            item["target"] = entry.link_target
        items.append(item)
    return items


def _kept_totals(kept: list[dict[str, Any]]) -> dict[str, Any]:
    files = [item for item in kept if item["kind"] == EntryKind.FILE.value]
    by_top: Counter[str] = Counter()
    for item in files:
        by_top[_top_dir(PurePosixPath(item["path"]))] += item["size"]
    return {
        "files": len(files),
        "bytes": sum(item["size"] for item in files),
        "bytes_by_top_dir": dict(sorted(by_top.items())),
    }


def _packages_section(rootfs: RootFS, closure: Closure) -> dict[str, Any]:
    """The OS packages scanners will find: the kept ones, with the database entries the original has."""
    original = original_packages(rootfs)
    if closure.packages is None:
        return {
            "database": "removed",
            "note": "--no-package-db: the slimmed image has no package database, so vulnerability scanners "
            "find no packages in it and report nothing: not because it has no vulnerabilities",
            "original": len(original),
            "kept": 0,
            "kept_packages": [],
            "removed_packages": [],
            "unsupported": [],
        }
    summary = closure.packages
    return {
        "database": "trimmed",
        "note": "the slimmed image holds the original database entries of the kept packages, their file lists "
        "trimmed to the kept files, and their copyright files",
        "original": len(original),
        "kept": len(summary.kept),
        "kept_packages": [asdict(package) for package in summary.kept],
        "removed_packages": [asdict(package) for package in summary.removed],
        "unsupported": [
            f"{path}: rpm databases are not read; scanners will see no rpm package" for path in summary.unsupported
        ],
    }


def _removed(rootfs: RootFS, closure: Closure, kind: EntryKind) -> list:
    return [entry for path, entry in rootfs.entries.items() if path not in closure.kept and entry.kind is kind]


def _bytes_by_reason(kept: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes attributed to each file's main (first) reason, so a user sees what each rule costs."""
    totals: Counter[str] = Counter()
    for item in kept:
        totals[item["reasons"][0]["kind"]] += item["size"]
    return dict(sorted(totals.items()))


def _volumes_section(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the image ships under each declared VOLUME: kept whole as the volume's seed data."""
    volumes: dict[str, dict[str, Any]] = {}
    for item in kept:
        for reason in item["reasons"]:
            if reason["kind"] == ReasonKind.VOLUME.value:
                volume = volumes.setdefault(reason["source"], {"path": reason["source"], "files": 0, "bytes": 0})
                if item["kind"] == EntryKind.FILE.value:
                    volume["files"] += 1
                    volume["bytes"] += item["size"]
    note = "seed data: Docker copies it into the volume at first start (opens there are not traced), kept whole"
    return [{**volume, "note": note} for _, volume in sorted(volumes.items())]


def _removed_section(rootfs: RootFS, closure: Closure) -> dict[str, Any]:
    removed = [
        entry for path, entry in rootfs.entries.items()
        if path not in closure.kept and entry.kind is EntryKind.FILE
    ]
    removed.sort(key=lambda entry: (-entry.size, str(entry.path)))
    by_top: Counter[str] = Counter()
    for entry in removed:
        by_top[_top_dir(entry.path)] += entry.size
    return {
        "files": len(removed),
        "bytes": sum(entry.size for entry in removed),
        "bytes_by_top_dir": dict(sorted(by_top.items())),
        "largest": [{"path": str(entry.path), "size": entry.size} for entry in removed[:LARGEST_REMOVED]],
    }


def _top_dir(path: PurePosixPath) -> str:
    return "/" + path.parts[1] if len(path.parts) > 2 else "/"


def _lookups_section(trace: Trace, rootfs: RootFS) -> dict[str, Any]:
    """What the lookup tracer saw; the paths the image lacks are listed (for `slim explain`), never kept."""
    missing: dict[str, list[str]] = {}
    for lookup in trace.lookups:
        if not rootfs.resolve(lookup.path, follow_last=lookup.follow).exists:
            missing.setdefault(str(lookup.path), [str(lookup.path), lookup.program, lookup.phase])
    health = trace.lookup_health
    return {
        "traced": health.traced,
        "note": health.note,
        "calls": health.calls,
        "paths": len({lookup.path for lookup in trace.lookups}),
        "in_image": len({lookup.path for lookup in trace.lookups} - {PurePosixPath(path) for path in missing}),
        "missing": sorted(missing.values()),
    }


def _run_section(trace: Trace) -> dict[str, Any]:
    run = trace.run
    return {
        "mode": run.mode,
        "exit_code": run.exit_code,
        "running_after_probes": run.running_after_probes,
        "listening": [list(socket) for socket in run.listening],
        "probes": [
            {
                "probe": p.probe,
                "ok": p.ok,
                "detail": p.detail,
                "fingerprint": dict(p.fingerprint),
                "readiness": p.readiness,
                "volatile": {key: stable.compared for key, stable in p.volatile.items()},
            }
            for p in run.probes
        ],
    }


def verification_section(verification: Verification | None) -> dict[str, Any]:
    """The report's verification section; `slim verify --json` prints the same shape."""
    if verification is None:
        return {"status": "skipped"}
    return {
        "status": "passed" if verification.passed else "failed",
        "invariant_failures": list(verification.invariant_failures),
        "comparisons": [asdict(c) for c in verification.comparisons],
        "missing_in_slimmed": list(verification.missing_in_slimmed),
    }
