"""The build report: one value that every renderer (terminal, JSON, CI) reads.

The JSON form is a stable contract for CI (versioned by SCHEMA_VERSION, described by
slim/schema/report.schema.json); renderers never compute anything the report does not hold.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from . import __version__
from .model import BuiltImage, Closure, EntryKind, ImageFacts, Trace, Verification
from .rootfs import RootFS

SCHEMA_VERSION = 1
LARGEST_REMOVED = 20


@dataclass(frozen=True)
class Report:
    data: Mapping[str, Any]

    def write(self, path: Path) -> None:
        """Atomically, so a CI step never reads half a report."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".slim-report-")
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, indent=2, sort_keys=False)
            out.write("\n")
        os.replace(temp, path)

    @classmethod
    def read(cls, path: Path) -> "Report":
        return cls(json.loads(path.read_text()))


def build_report(
    facts: ImageFacts,
    rootfs: RootFS,
    trace: Trace,
    closure: Closure,
    built: BuiltImage,
    tag: str | None,
    verification: Verification | None,
    timings: Mapping[str, float],
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
            "run": _run_section(trace),
            "verification": _verification_section(verification),
            "bytes_by_reason": _bytes_by_reason(kept),
            "removed": _removed_section(rootfs, closure),
            "warnings": list(closure.warnings),
            "timings": dict(timings),
            "kept": kept,
        }
    )


def _kept_files(rootfs: RootFS, closure: Closure) -> list[dict[str, Any]]:
    items = []
    for path in sorted(closure.kept):
        entry = rootfs.get(path)
        if entry is None:
            continue
        items.append(
            {
                "path": str(path),
                "kind": entry.kind.value,
                "size": entry.size,
                "reasons": [
                    {"kind": r.kind.value, "source": r.source, "detail": r.detail} for r in closure.kept[path]
                ],
            }
        )
    return items


def _bytes_by_reason(kept: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes attributed to each file's main (first) reason, so a user sees what each rule costs."""
    totals: Counter[str] = Counter()
    for item in kept:
        totals[item["reasons"][0]["kind"]] += item["size"]
    return dict(sorted(totals.items()))


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


def _run_section(trace: Trace) -> dict[str, Any]:
    run = trace.run
    return {
        "mode": run.mode,
        "exit_code": run.exit_code,
        "running_after_probes": run.running_after_probes,
        "probes": [
            {"probe": p.probe, "ok": p.ok, "detail": p.detail, "fingerprint": dict(p.fingerprint)} for p in run.probes
        ],
    }


def _verification_section(verification: Verification | None) -> dict[str, Any]:
    if verification is None:
        return {"status": "skipped"}
    return {
        "status": "passed" if verification.passed else "failed",
        "invariant_failures": list(verification.invariant_failures),
        "comparisons": [asdict(c) for c in verification.comparisons],
        "missing_in_slimmed": list(verification.missing_in_slimmed),
    }
