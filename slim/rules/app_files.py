"""Rule app-files: the files the image's own layers added (read from the Dockerfile step behind each layer)."""
from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import ROOT, EntryKind, Reason, ReasonKind, at_or_under
from slim.image.build_steps import step_text

from .base import P, Keep, RuleContext

APP_FILES_MODES = ("none", "touched", "all")
STEP_TEXT_LIMIT = 60  # characters of a Dockerfile step quoted in a reason


class StepKind(enum.Enum):
    BASE = "base"  # the base image's root filesystem (an imported tarball, ADD ... /)
    COPY = "copy"  # COPY or ADD of the build context or another stage
    OS_PACKAGES = "os-packages"  # a RUN step that runs the distribution's package manager
    RUN = "run"  # any other RUN step
    OTHER = "other"  # metadata steps (ENV, WORKDIR, ...), when they made a layer at all


_METADATA = frozenset({
    "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD",
    "ARG", "MAINTAINER", "WORKDIR",
})
# What distributions install with: its files are the OS's, covered by the runtime and package rules.
_OS_PACKAGE_MANAGER = re.compile(
    r"(?<![\w./-])(apt-get|apt|aptitude|dpkg|apk|yum|dnf|microdnf|tdnf|zypper|rpm|pacman)(?![\w-])"
)
# Where language package managers (pip, npm, gem, bundler) install: never app files, whatever the layer.
PACKAGE_TREES = frozenset({"node_modules", "site-packages", "dist-packages", "gems"})
# Version control and tool caches in an application directory: never needed at run time.
VCS_AND_CACHES = frozenset(
    {".git", ".hg", ".svn", ".bzr", ".cache", ".npm", ".yarn", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox",
     ".nox"}
)
# Directories that hold far more than one application: the entrypoint or WORKDIR there names no app.
SYSTEM_DIRS = frozenset(
    P(p) for p in (
        "/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64",
        "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/share", "/etc",
        "/var", "/var/lib", "/opt", "/srv", "/home", "/root", "/tmp", "/run",
    )
)


def step_kind(created_by: str) -> StepKind:
    """What a Dockerfile step (an image history entry's `created_by`) did, for the layer it made."""
    text = step_text(created_by)
    if not text:
        return StepKind.BASE  # `docker import`: no step at all
    word, _, rest = text.partition(" ")
    if word in ("COPY", "ADD"):
        # ADD unpacks tarballs: `ADD file:<digest> in /` or `ADD rootfs.tar.xz /` is a base image's root.
        return StepKind.BASE if word == "ADD" and _destination(rest) == "/" else StepKind.COPY
    if word in _METADATA:
        return StepKind.OTHER
    # A RUN step: `RUN ...` from BuildKit, the shell command itself from the classic builder.
    return StepKind.OS_PACKAGES if _OS_PACKAGE_MANAGER.search(text) else StepKind.RUN


def _destination(arguments: str) -> str:
    # Classic: "dir:<digest> in /app/ "; BuildKit: "[--chown=...] src... dest".
    target = arguments.rsplit(" in ", 1)[1] if " in " in arguments else (arguments.split() or [""])[-1]
    target = target.strip()
    return target.rstrip("/") or "/" if target.startswith("/") else target


def _app_roots(ctx: RuleContext) -> list[tuple[PurePosixPath, str]]:
    """Directories whose files (from the application's layers) are app files, with why."""
    roots = []
    workdir = ctx.facts.working_dir
    if workdir not in SYSTEM_DIRS:
        roots.append((workdir, f"under WORKDIR {workdir}"))
    script = ctx.entrypoint_script
    if script is not None and script.parent not in SYSTEM_DIRS:
        roots.append((script.parent, f"next to the entrypoint {script}"))
    return roots


def keep_app_files(ctx: RuleContext) -> Iterator[Keep]:
    """Files the image's own application layers added, kept whole (`--app-files all`, the default) or
    only in the directories the run touched (`--app-files touched`).

    An app file comes from a layer above the base (never the first layer, nor an `ADD ... /` root) and
    either from a COPY/ADD step or from below WORKDIR or the entrypoint script's directory. A layer written
    by the distribution's package manager holds none; package trees (node_modules, site-/dist-packages,
    gems) are never app files whatever the layer (the packages rule keeps them once used); nor are version
    control directories and tool caches.
    """
    if ctx.app_files == "none" or not ctx.once("app-files"):
        return
    kinds = [step_kind(step) for step in ctx.layer_steps] if ctx.layer_steps is not None else None
    roots = _app_roots(ctx)
    touched = {path.parent for path in ctx.traced} | {path for path in ctx.traced if ctx.is_dir(path)}
    for entry in ctx.rootfs.walk(ROOT):
        if entry.layer <= 0 or entry.path == ROOT:
            continue
        kind = kinds[entry.layer] if kinds is not None and entry.layer < len(kinds) else StepKind.RUN
        if kind in (StepKind.BASE, StepKind.OS_PACKAGES):
            continue
        if entry.kind is EntryKind.DIR and ctx.rootfs.children(entry.path):
            continue  # a directory holding anything comes as the parent of what is kept
        parts = set(entry.path.parts)
        if parts & PACKAGE_TREES or parts & VCS_AND_CACHES:
            continue
        why = next((why for root, why in roots if at_or_under(entry.path, root) and entry.path != root), None)
        if why is None and kind is StepKind.COPY:
            why = "copied into the image"
        if why is None or (ctx.app_files == "touched" and entry.path.parent not in touched):
            continue
        step = ctx.layer_steps[entry.layer] if ctx.layer_steps is not None else ""
        yield entry.path, Reason(ReasonKind.APP_FILE, source=f"layer {entry.layer}{_quote(step)}", detail=why)


def _quote(step: str) -> str:
    text = step_text(step)
    if not text:
        return ""
    return f" ({text[:STEP_TEXT_LIMIT]}…)" if len(text) > STEP_TEXT_LIMIT else f" ({text})"
