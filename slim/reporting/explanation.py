"""`slim explain REPORT PATH`: why a path is in the slimmed image, or why it is not.

A kept path is explained by each of its reasons, and each reason by the chain behind its source (the ELF
that needs a library, the file a symlink leads to, ...) until a root: something the run did (traced, the
entrypoint) or a rule (always kept, --include-path, volume seed data, state directory). A removed path is
explained by what the report knows: it was excluded, or nothing used it.

Paths are resolved in a skeleton of the original filesystem rebuilt from the report (kept entries with
symlink targets, removed files and symlinks), with the same in-root resolution `slim build` uses, so a path
spelled through a symlink (/lib/x86_64-linux-gnu/libc.so.6) is explained too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Mapping

from slim.errors import UsageError
from slim.image.rootfs import RootFS
from slim.model import ROOT, EntryKind, FileEntry, ReasonKind, at_or_under

from .json_tree import to_json
from .report import KeptEntry, ReasonRecord, Report

# Reasons that need no further why: the run did it, or a rule the user or slimtrace set.
ROOT_REASONS = frozenset(
    kind.value for kind in (
        ReasonKind.TRACED,
        ReasonKind.LOOKED_UP,
        ReasonKind.ENTRYPOINT,
        ReasonKind.ALWAYS,
        ReasonKind.INCLUDE,
        ReasonKind.VOLUME,
        ReasonKind.STATE_DIR,
        ReasonKind.PACKAGE_DB,
        ReasonKind.LICENSE,
    )
)
MAX_CHAIN = 40


class NotInImage(UsageError):
    def __init__(self, path: PurePosixPath):
        super().__init__(
            f"{path} is not in the image: the report lists it neither as kept nor as a removed file or symlink"
            " (an empty directory or a device node that was removed is not listed either)"
        )


@dataclass(frozen=True)
class Step:
    """One link of a chain: `path` is kept because of `reason` (kind, source, detail as in the report)."""

    path: str
    reason: ReasonRecord


@dataclass(frozen=True)
class ReasonChain:
    reason: ReasonRecord
    chain: tuple[Step, ...]  # why the reason's source is kept, and so on up to a root


@dataclass(frozen=True)
class Explanation:
    asked: str  # the path as given
    path: str  # where it leads with the directories' symlinks followed (the last component is not)
    via: tuple[tuple[str, str, bool], ...]  # symlinks followed on the way: (link, target, kept)
    status: str  # "kept", "removed", "excluded", or "missing": not in the image, but the run looked it up
    kind: str  # file, dir, symlink, ... ("dir" for a directory only implied by the removed files below it)
    size: int
    target: str | None = None  # a symlink's target text
    reasons: tuple[ReasonChain, ...] = ()
    excluded_by: str | None = None
    removed_below: tuple[int, int] = (0, 0)  # a directory: (files, bytes) removed below it
    leads_to: Explanation | None = None  # a symlink: the explanation of the path it resolves to
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.asked,
            "resolved": self.path,
            "via_symlinks": [{"link": link, "target": target, "kept": kept} for link, target, kept in self.via],
            "status": self.status,
            "kind": self.kind,
            "size": self.size,
            "target": self.target,
            "reasons": [
                {**to_json(r.reason), "chain": [{"path": s.path, **to_json(s.reason)} for s in r.chain]}
                for r in self.reasons
            ],
            "excluded_by": self.excluded_by,
            "removed_below": {"files": self.removed_below[0], "bytes": self.removed_below[1]},
            "leads_to": self.leads_to.as_dict() if self.leads_to else None,
            "notes": list(self.notes),
        }


def explain(report: Report, path: PurePosixPath) -> Explanation:
    return _Explainer(report).explain(path)


class _Explainer:
    def __init__(self, report: Report):
        self.kept: dict[str, KeptEntry] = {item.path: item for item in report.kept}
        self.removed_files: dict[str, int] = dict(report.removed_files or ())
        self.removed_links: dict[str, str] = dict(report.removed_symlinks or ())
        options = report.options
        self.excluded = [PurePosixPath(p) for p in options.exclude_paths] if options else []
        self.included = [PurePosixPath(p) for p in options.include_paths] if options else []
        self.root = _skeleton(self.kept, self.removed_files, self.removed_links)
        missing = report.lookups.missing if report.lookups else ()
        self.missing_lookups = {path: (program, phase) for path, program, phase in missing}
        if report.removed_files is None:
            self.notes = ("this report predates removed-file listings: removed paths cannot be explained",)
        else:
            self.notes = ()

    def explain(self, asked: PurePosixPath, depth: int = 0) -> Explanation:
        lexical = self.root.resolve(asked, follow_last=False)
        entry = self.root.get(lexical.path) if lexical.exists else None
        if entry is None:
            return self._missing(asked, lexical.path)
        path = str(lexical.path)
        via = tuple((str(link), self._target(str(link)), str(link) in self.kept) for link in lexical.symlinks)
        notes = list(self.notes)
        missing = [link for link, _, kept in via if not kept]
        if missing:
            notes.append(f"{', '.join(missing)} is not in the slimmed image, so this spelling of the path does not"
                         f" resolve there; {path} does")
        leads_to = None
        if entry.kind is EntryKind.SYMLINK and depth < 1:
            final = self.root.resolve(lexical.path)
            if final.exists and final.path != lexical.path:
                leads_to = self.explain(final.path, depth + 1)
        common = dict(asked=str(asked), path=path, via=via, kind=entry.kind.value, size=entry.size,
                      target=entry.link_target, leads_to=leads_to)
        below = self._removed_below(path) if entry.kind is EntryKind.DIR else (0, 0)
        if path in self.kept:
            reasons = tuple(
                ReasonChain(self._named(r, lexical.path), self._chain(r, {path})) for r in self.kept[path].reasons
            )
            return Explanation(status="kept", reasons=reasons, removed_below=below, notes=tuple(notes), **common)
        excluded = next((e for e in self.excluded if at_or_under(lexical.path, e)), None)
        return Explanation(
            status="excluded" if excluded else "removed",
            excluded_by=str(excluded) if excluded else None,
            removed_below=below,
            notes=tuple(notes),
            **common,
        )

    def _missing(self, asked: PurePosixPath, path: PurePosixPath) -> Explanation:
        """A path the image lacks: a usage error, unless the run looked it up (and found nothing)."""
        looked_up = self.missing_lookups.get(str(asked)) or self.missing_lookups.get(str(path))
        if looked_up is None:
            raise NotInImage(asked)
        program, phase = looked_up
        reason = ReasonRecord(ReasonKind.LOOKED_UP.value, program, f"during {phase}")
        note = "the original image does not have it either: the check failed there too, so there is nothing to keep"
        return Explanation(asked=str(asked), path=str(path), via=(), status="missing", kind="missing", size=0,
                           reasons=(ReasonChain(reason, ()),), notes=(note,))

    def _named(self, reason: ReasonRecord, path: PurePosixPath) -> ReasonRecord:
        """An --include-path reason with the option that caused it (the report records the options)."""
        if reason.kind != ReasonKind.INCLUDE.value or reason.source:
            return reason
        option = next((p for p in self.included if at_or_under(path, p)), None)
        return dataclasses.replace(reason, source=str(option)) if option else reason

    def _chain(self, reason: ReasonRecord, seen: set[str]) -> tuple[Step, ...]:
        """From a reason's source up to a root, each step the source's most direct reason."""
        steps: list[Step] = []
        current = reason
        while self._follows(current) and current.source not in seen and len(steps) < MAX_CHAIN:
            path = current.source
            seen.add(path)
            current = self._best_reason(self.kept[path].reasons, seen)
            steps.append(Step(path, current))
        return tuple(steps)

    def _follows(self, reason: ReasonRecord) -> bool:
        return reason.kind not in ROOT_REASONS and reason.source in self.kept

    def _best_reason(self, reasons: tuple[ReasonRecord, ...], seen: set[str]) -> ReasonRecord:
        """A root if there is one (the chain ends), else the first reason that leads somewhere new."""
        return next(
            (r for r in reasons if r.kind in ROOT_REASONS),
            next((r for r in reasons if self._follows(r) and r.source not in seen), reasons[0]),
        )

    def _target(self, link: str) -> str:
        if link in self.kept:
            return self.kept[link].target or ""
        return self.removed_links.get(link, "")

    def _removed_below(self, directory: str) -> tuple[int, int]:
        prefix = directory.rstrip("/") + "/"
        sizes = [size for path, size in self.removed_files.items() if path.startswith(prefix)]
        return len(sizes), sum(sizes)


def _skeleton(kept: Mapping[str, KeptEntry], removed_files: Mapping[str, int], removed_links: Mapping[str, str]) -> RootFS:
    """The original filesystem's names as the report knows them, as a RootFS to resolve paths in."""
    entries: dict[str, FileEntry] = {}

    def add(path: str, kind: EntryKind, size: int = 0, target: str | None = None) -> None:
        entries[path] = FileEntry(PurePosixPath(path), kind, 0o755, 0, 0, 0, size=size, link_target=target)

    for path, item in kept.items():
        add(path, EntryKind(item.kind), item.size, item.target)
    for path, size in removed_files.items():
        add(path, EntryKind.FILE, size)
    for path, target in removed_links.items():
        add(path, EntryKind.SYMLINK, target=target)
    for path in list(entries):
        for parent in PurePosixPath(path).parents:
            if str(parent) in entries:
                break
            add(str(parent), EntryKind.DIR)
    if "/" not in entries:
        add(str(ROOT), EntryKind.DIR)
    return RootFS((), entries, {})
