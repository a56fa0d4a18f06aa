"""`slim explain` for people: the reasons a path is kept, each followed to its root, or why it went."""
from __future__ import annotations

from slim.build.sizes import human_size
from .explanation import Explanation
from .report import ReasonRecord
from slim.model import Reason, ReasonKind

ACCESS_WORDS = {"open": "opened", "exec": "executed", "list": "listed"}


def describe(reason: ReasonRecord) -> str:
    """One reason of the report in words."""
    kind, source, detail = reason.kind, reason.source, reason.detail
    if kind == ReasonKind.TRACED.value:
        accesses, _, phase = detail.partition(" during ")
        verbs = " and ".join(ACCESS_WORDS.get(a, a) for a in accesses.split("|") if a) or "used"
        who = source or "a process that had already exited"
        return f"traced: {verbs} by {who}" + (f" during {phase}" if phase else "")
    if kind == ReasonKind.LOOKED_UP.value:
        who = source or "a process that had already exited"
        return f"looked up (checked for, not opened) by {who} {detail}".rstrip()
    words = {
        ReasonKind.ENTRYPOINT.value: f"the image's entrypoint ({source})",
        ReasonKind.ELF_NEEDED.value: f"library needed by {source}",
        ReasonKind.ELF_INTERP.value: f"ELF interpreter (dynamic loader) of {source}",
        ReasonKind.SYMLINK.value: f"symlink on the path to {source}",
        ReasonKind.PARENT.value: f"directory above {source}",
        ReasonKind.SHEBANG.value: f"#! interpreter of the script {source}",
        ReasonKind.ALWAYS.value: "always kept (read by the runtime before anything can be traced)",
        ReasonKind.INCLUDE.value: f"kept by --include-path {source}".rstrip(),
        ReasonKind.VOLUME.value: f"seed data of the volume {source}",
        ReasonKind.HARDLINK.value: f"another name (hard link) of {source}",
        ReasonKind.STATE_DIR.value: "run-time state directory (kept, empty, so programs can create files in it)",
        ReasonKind.COMPANION.value: f"companion of {source}",
    }
    text = words.get(kind)
    if text is None:  # the closure's other rules say it in their own words
        try:
            return Reason(ReasonKind(kind), source, detail).describe()
        except ValueError:  # a kind this version does not know (a newer report)
            text = " ".join(part for part in (kind, source) if part)
    return f"{text} ({detail})" if detail else text


def render_explanation(e: Explanation) -> str:
    lines = []
    if e.via:
        links = ", ".join(f"{link} -> {target}" for link, target, _ in e.via)
        lines.append(f"{e.asked} is {e.path} (through {links})")
    lines.append(f"{e.path}: {_headline(e)}")
    for chain in e.reasons:
        lines.append(f"  - {describe(chain.reason)}")
        for depth, step in enumerate(chain.chain, 1):
            lines.append(f"  {'    ' * depth}{step.path}: {describe(step.reason)}")
    if e.status == "excluded":
        lines.append(f"  removed by --exclude-path {e.excluded_by}, whether the run used it or not")
    elif e.status == "removed":
        if e.kind == "dir":
            lines.append("  nothing below it was opened or executed during the traced run, and no kept file needs it")
        else:
            lines.append("  never opened or executed during the traced run, and no kept file needs it")
    for note in e.notes:
        lines.append(f"  note: {note}")
    if e.leads_to is not None:
        lines += ["", render_explanation(e.leads_to)]
    return "\n".join(lines)


def _headline(e: Explanation) -> str:
    what = e.kind if e.kind != "dir" else "directory"
    if e.kind == "file":
        what += f", {human_size(e.size)}"
    if e.target is not None:
        what += f" -> {e.target}"
    files, size = e.removed_below
    below = f"; {files:,} files ({human_size(size)}) below it removed" if files else ""
    if e.status == "missing":
        return "not in the image"
    status = {"kept": "kept", "removed": "removed", "excluded": "removed"}[e.status]
    return f"{status} ({what}{below})"
