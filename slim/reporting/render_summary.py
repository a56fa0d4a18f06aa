"""Renderers of a Report for people. They format; they never compute what the report does not hold."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from slim.build.sizes import human_size

from .report import SKIPPED, VERIFIED, LookupsSummary, Report, VerificationSummary
from slim.safe_text import console as safe


def render_summary(console: Console, report: Report, path: Path) -> None:
    """The few lines a person at a terminal needs after `slim build`."""
    source, result, trace = report.source, report.result, report.trace
    console.print(
        f"[bold]{safe(source.ref)}[/]  {human_size(source.size)} -> [bold green]{human_size(result.size)}[/]"
        f"  ({report.reduction_ratio}x smaller; {source.files:,} -> {result.files:,} files)"
    )
    console.print(f"slimmed image: {safe(result.tag or '(not tagged)')}  {result.id}")
    console.print(_verification_line(report.verification))
    health = "complete" if trace.complete else "[bold red]INCOMPLETE (kernel queue overflowed)[/]"
    console.print(f"trace: {trace.paths:,} paths from {trace.events:,} events, {health}")
    console.print(_packages_line(report))
    console.print(_lookups_line(report.lookups))
    for warning in report.warnings[:5]:
        console.print(f"[yellow]warning:[/] {safe(warning)}")
    if len(report.warnings) > 5:
        console.print(f"[yellow]warning:[/] … and {len(report.warnings) - 5} more in the report")
    console.print(f"report: {safe(path)}")


def _packages_line(report: Report) -> str:
    packages = report.packages
    if packages.database == "removed":
        seen = "[yellow]none visible to scanners[/] (--no-package-db)"
    else:
        seen = f"{packages.original:,} -> {packages.kept:,} in the trimmed database"
    return f"packages: {seen}; SBOM: {report.sbom.path}"


_MECHANISMS = {"ebpf": "eBPF", "seccomp": "seccomp filter"}


def _lookups_line(lookups: LookupsSummary) -> str:
    if not lookups.traced:
        return f"lookups: [yellow]not traced[/] ({lookups.note}): only opens were seen"
    how = f" ({_MECHANISMS[lookups.mechanism]})" if lookups.mechanism in _MECHANISMS else ""
    note = f"; {safe(lookups.note)}" if lookups.note else ""  # why not eBPF, or what could not be recorded
    return (f"lookups: {lookups.paths:,} paths from {lookups.calls:,} calls{how}, {lookups.in_image:,} in the"
            f" image (kept), {len(lookups.missing):,} missing{note}")


def _verification_line(verification: VerificationSummary) -> str:
    if verification.status == SKIPPED:
        return "verification: [yellow]skipped[/]"
    comparisons = verification.comparisons
    if verification.status == VERIFIED:
        volatile = sum(len(c.volatile) for c in comparisons)
        learned = f"; {volatile} volatile answers compared by their stable parts" if volatile else ""
        return f"verification: [bold green]passed[/] ({len(comparisons)} checks, same behaviour as the original{learned})"
    failed = [c for c in comparisons if not c.same]
    lines = [f"verification: [bold red]FAILED[/] ({len(failed)} of {len(comparisons)} checks differ)"]
    lines += [f"  {safe(c.probe)}: original {safe(c.original)} / slimmed {safe(c.slimmed)}" for c in failed]
    lines += [f"  invariant: {safe(problem)}" for problem in verification.invariant_failures]
    return "\n".join(lines)
