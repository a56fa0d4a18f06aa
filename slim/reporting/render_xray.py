"""`slim xray` for people: plain text from the XRay value (the JSON form is XRay.as_dict())."""
from __future__ import annotations

import shlex

from slim.build.sizes import human_size
from slim.image.build_steps import dockerfile_line
from .xray import XRay

STEP_WIDTH = 70


def build_step(created_by: str) -> str:
    """A history entry as the Dockerfile line people recognise: "RUN apt-get ...", "COPY dir:... in /x"."""
    if not created_by:
        return "(no build step recorded: an imported or base layer)"
    text = " ".join(dockerfile_line(created_by).split())
    return text if len(text) <= STEP_WIDTH else text[: STEP_WIDTH - 1] + "…"


def render_xray(x: XRay, top: int = 10) -> str:
    lines = [
        f"{x.ref}  {x.id[:19]}",
        f"  {x.os}/{x.architecture}, {human_size(x.size)}, {len(x.layers)} layers, {x.files:,} files"
        + (f", created {x.created[:19]}" if x.created else ""),
        f"  command: {shlex.join(x.command) or '(none)'}" + (f"  (user {x.user})" if x.user else ""),
        "",
        "Layers",
    ]
    for layer in x.layers:
        deletions = f", deletes {layer.deletions}" if layer.deletions else ""
        lines.append(
            f"  {layer.index:>3}  {human_size(layer.size):>9}  {layer.files:>6,} files{deletions:<14}  "
            f"{build_step(layer.created_by)}"
        )
    lines += [
        "",
        f"Efficiency  {x.efficiency * 100:.2f} %  ({human_size(x.wasted_bytes)} of {human_size(x.total_bytes)}"
        " in the layers is overwritten or deleted by a later layer)",
    ]
    if x.waste:
        lines.append(f"  {'wasted':>9}  {'files':>6}  {'layer':>5}  path")
        for item in x.waste[:top]:
            layers = ",".join(str(n) for n in item.layers)
            lines.append(f"  {human_size(item.bytes):>9}  {item.files:>6,}  {layers:>5}  {item.path}  ({item.how})")
        lines += _more(len(x.waste), top, "paths")
    lines += ["", "Largest directories"]
    for directory in x.largest_dirs[:top]:
        lines.append(f"  {human_size(directory.bytes):>9}  {directory.files:>6,} files  {directory.path}")
    executables = [e for e in x.elf if e.kind == "executable"]
    unresolved = [e for e in x.elf if e.unresolved]
    lines += [
        "",
        f"ELF files  {len(executables)} executables, {len(x.elf) - len(executables)} libraries, "
        f"{len(unresolved)} with unresolved libraries",
    ]
    entrypoint = next((e for e in x.elf if e.path == x.entrypoint_elf), None)
    if entrypoint is not None:
        lines.append(f"  {entrypoint.path} (the image's command) needs:")
        lines += [f"    {name} => {found or 'NOT FOUND'}" for name, found in entrypoint.needed]
        if not entrypoint.needed:
            lines.append("    nothing (a static executable)" if entrypoint.static else "    no libraries")
    for item in unresolved[:top]:
        lines.append(f"  {item.path}: not found: {', '.join(item.unresolved)}")
    lines += _more(len(unresolved), top, "files with unresolved libraries")
    lines += ["", f"OS packages  {len(x.packages)}"]
    by_size = sorted(x.packages, key=lambda p: (-(p.installed_size or 0), p.name))
    for package in by_size[:top]:
        lines.append(
            f"  {human_size(package.installed_size):>9}  {package.name} {package.version} ({package.manager})"
        )
    lines += _more(len(x.packages), top, "packages")
    lines += ["", f"setuid/setgid/capability files  {len(x.privileged)}"]
    for item in x.privileged:
        flags = ", ".join(
            word for word, on in (("setuid", item.setuid), ("setgid", item.setgid), ("capabilities", item.capabilities))
            if on
        )
        lines.append(f"  {item.mode}  {item.owner:>7}  {item.path}  ({flags})")
    for warning in x.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _more(count: int, shown: int, what: str) -> list[str]:
    return [f"  … and {count - shown} more {what} (--top or --json for all)"] if count > shown else []
