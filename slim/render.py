"""Renderers of a Report for people. They format; they never compute what the report does not hold."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .report import Report


def human_size(size: int | float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def render_summary(console: Console, report: Report, path: Path) -> None:
    """The few lines a person at a terminal needs after `slim build`."""
    data = report.data
    source, result = data["source"], data["result"]
    ratio = data["reduction_ratio"]
    console.print(
        f"[bold]{source['ref']}[/]  {human_size(source['size'])} -> [bold green]{human_size(result['size'])}[/]"
        f"  ({ratio}x smaller; {source['files']:,} -> {result['files']:,} files)"
    )
    console.print(f"slimmed image: {result['tag'] or '(not tagged)'}  {result['id']}")
    console.print(_verification_line(data["verification"]))
    trace = data["trace"]
    health = "complete" if trace["complete"] else "[bold red]INCOMPLETE (kernel queue overflowed)[/]"
    console.print(f"trace: {trace['paths']:,} paths from {trace['events']:,} events, {health}")
    for warning in data["warnings"][:5]:
        console.print(f"[yellow]warning:[/] {warning}")
    if len(data["warnings"]) > 5:
        console.print(f"[yellow]warning:[/] … and {len(data['warnings']) - 5} more in the report")
    console.print(f"report: {path}")


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
    lines += [f"  {c['probe']}: original {c['original']} / slimmed {c['slimmed']}" for c in failed]
    lines += [f"  invariant: {problem}" for problem in verification["invariant_failures"]]
    return "\n".join(lines)
