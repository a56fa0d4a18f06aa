"""Renderers of a Report for people. They format; they never compute what the report does not hold."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from slim.build.sizes import human_size

from .report import Report
from slim.safe_text import console as safe


def render_summary(console: Console, report: Report, path: Path) -> None:
    """The few lines a person at a terminal needs after `slim build`."""
    data = report.data
    source, result = data["source"], data["result"]
    ratio = data["reduction_ratio"]
    console.print(
        f"[bold]{safe(source['ref'])}[/]  {human_size(source['size'])} -> [bold green]{human_size(result['size'])}[/]"
        f"  ({ratio}x smaller; {source['files']:,} -> {result['files']:,} files)"
    )
    console.print(f"slimmed image: {safe(result['tag'] or '(not tagged)')}  {result['id']}")
    console.print(_verification_line(data["verification"]))
    trace = data["trace"]
    health = "complete" if trace["complete"] else "[bold red]INCOMPLETE (kernel queue overflowed)[/]"
    console.print(f"trace: {trace['paths']:,} paths from {trace['events']:,} events, {health}")
    console.print(_packages_line(data))
    console.print(_lookups_line(data["lookups"]))
    for warning in data["warnings"][:5]:
        console.print(f"[yellow]warning:[/] {safe(warning)}")
    if len(data["warnings"]) > 5:
        console.print(f"[yellow]warning:[/] … and {len(data['warnings']) - 5} more in the report")
    console.print(f"report: {safe(path)}")


def _packages_line(data: dict) -> str:
    packages, sbom = data["packages"], data["sbom"]
    if packages["database"] == "removed":
        seen = "[yellow]none visible to scanners[/] (--no-package-db)"
    else:
        seen = f"{packages['original']:,} -> {packages['kept']:,} in the trimmed database"
    return f"packages: {seen}; SBOM: {sbom['path']}"


def _lookups_line(lookups: dict) -> str:
    if not lookups["traced"]:
        return f"lookups: [yellow]not traced[/] ({lookups['note']}): only opens were seen"
    return (f"lookups: {lookups['paths']:,} paths from {lookups['calls']:,} calls, {lookups['in_image']:,} in the image"
            f" (kept), {len(lookups['missing']):,} missing")


def _verification_line(verification: dict) -> str:
    status = verification["status"]
    if status == "skipped":
        return "verification: [yellow]skipped[/]"
    checks = len(verification["comparisons"])
    if status == "passed":
        volatile = sum(len(c.get("volatile", {})) for c in verification["comparisons"])
        learned = f"; {volatile} volatile answers compared by their stable parts" if volatile else ""
        return f"verification: [bold green]passed[/] ({checks} checks, same behaviour as the original{learned})"
    failed = [c for c in verification["comparisons"] if not c["same"]]
    lines = [f"verification: [bold red]FAILED[/] ({len(failed)} of {checks} checks differ)"]
    lines += [f"  {safe(c['probe'])}: original {safe(c['original'])} / slimmed {safe(c['slimmed'])}" for c in failed]
    lines += [f"  invariant: {safe(problem)}" for problem in verification["invariant_failures"]]
    return "\n".join(lines)
