"""Rule packages: a Python, Node or Ruby package kept whole (not its docs and tests) once one file is used."""
from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.model import EntryKind, FileEntry, Reason, ReasonKind
from .base import P, Keep, RuleContext, walk

# Inside a package: what only its developers use. `testing` is left alone (numpy.testing is imported).
PACKAGE_SKIP_DIRS = frozenset({"test", "tests", "__tests__", "doc", "docs", "example", "examples", "benchmark",
                               "benchmarks", ".github", "coverage", ".nyc_output"})
_DOC_FILE = re.compile(r"(?i)^(readme|changelog|changes|history)([.-].*)?$|.*\.(md|markdown)$")
NODE_GLOBAL_DIRS = tuple(P(p) for p in ("/usr/share/nodejs", "/usr/lib/nodejs"))  # Debian's node packages
_MODULE_NAME = re.compile(r"^([A-Za-z_][\w]*)(?:\..*)?$")


@dataclass(frozen=True)
class Package:
    root: PurePosixPath  # what names it in reasons
    members: tuple[PurePosixPath, ...]


def keep_packages(ctx: RuleContext) -> Iterator[Keep]:
    """A language package is kept whole (code and data, not docs or tests) once any file of it was used:
    a Python package (a directory with __init__.py under site-/dist-packages, or every file a
    .dist-info/RECORD or .egg-info lists), a Node package (its directory under node_modules, or Debian's
    /usr/share/nodejs), a Ruby gem or vendor_ruby library. A Java jar is one file: kept when opened."""
    seen = ctx.memo.setdefault("packages", set())
    for path in sorted(ctx.traced):
        package = _package_of(ctx, path)
        if package is None or package.root in seen:
            continue
        seen.add(package.root)
        reason = Reason(ReasonKind.PACKAGE, source=str(package.root), detail=f"used: {path}")
        for member in package.members:
            yield member, reason


def _package_of(ctx: RuleContext, path: PurePosixPath) -> Package | None:
    return _python_package(ctx, path) or _node_package(ctx, path) or ruby_package(ctx, path)


def package_files(ctx: RuleContext, top: PurePosixPath) -> list[PurePosixPath]:
    """A package's tree without tests, docs and examples, and without the packages nested in its own
    node_modules (each of those is kept once used)."""

    def skip(relative: tuple[str, ...], entry: FileEntry) -> bool:
        name = relative[-1]
        if entry.kind is EntryKind.DIR:
            return name in PACKAGE_SKIP_DIRS or name == "node_modules"
        return bool(_DOC_FILE.match(name)) and not name.endswith((".py", ".js"))

    return [entry.path for entry in walk(ctx.rootfs, top, skip)]


# ---- Python


def _python_package(ctx: RuleContext, path: PurePosixPath) -> Package | None:
    parts = path.parts
    sites = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
    if not sites or sites[-1] == len(parts) - 1:
        return None
    site = P(*parts[: sites[-1] + 1])
    relative = parts[sites[-1] + 1:]
    by_file, by_name = python_distributions(ctx, site)
    top = relative[0]
    if top == "__pycache__" and len(relative) > 1:
        top = relative[1].split(".", 1)[0]  # six.cpython-311.pyc belongs to six.py
    dist = by_file.get(path) or by_name.get(top) or by_name.get(_module_name(top))
    if dist is not None:
        return dist
    if ctx.is_dir(site / top):
        package = _outermost_regular_package(ctx, site, relative)
        return Package(package, tuple(package_files(ctx, package)))
    module = _module_name(top)
    return Package(site / top, tuple(_module_files(ctx, site, module))) if module else None


def _module_name(name: str) -> str:
    match = _MODULE_NAME.match(name)
    return match[1] if match else ""


def _module_files(ctx: RuleContext, site: PurePosixPath, module: str) -> list[PurePosixPath]:
    """A top-level module: module.py, its compiled forms, its extension modules (module.cpython-*.so)."""
    candidates = ctx.rootfs.children(site) + ctx.rootfs.children(site / "__pycache__")
    return [c for c in candidates if _module_name(c.name) == module and not ctx.is_dir(c)]


def _outermost_regular_package(ctx: RuleContext, site: PurePosixPath, relative: tuple[str, ...]) -> PurePosixPath:
    """The outermost directory on the way to the file with an __init__.py (a namespace package such as
    google/ holds several packages: keep the one used)."""
    directory = site
    for part in relative[:-1]:
        directory = directory / part
        if ctx.is_file(directory / "__init__.py"):
            return directory
    return site / relative[0]


Distributions = tuple[dict[PurePosixPath, Package], dict[str, Package]]


def python_distributions(ctx: RuleContext, site: PurePosixPath) -> Distributions:
    """The distributions installed in a site directory, by each file they list and by top-level name."""
    memo = ctx.memo.setdefault("python-distributions", {})
    if site not in memo:
        memo[site] = _read_distributions(ctx, site)
    return memo[site]


def _read_distributions(ctx: RuleContext, site: PurePosixPath) -> Distributions:
    """A distribution is its metadata directory plus the files its RECORD (wheels) or installed-files.txt
    lists; without such a list, the top-level packages and modules its top_level.txt names. Namespace
    directories (no __init__.py, shared by distributions) are never taken whole."""
    by_file: dict[PurePosixPath, Package] = {}
    by_name: dict[str, Package] = {}
    for meta in ctx.rootfs.children(site):
        if not (meta.name.endswith((".dist-info", ".egg-info")) and ctx.is_dir(meta)):
            continue
        listed = [path for path in _listed_files(ctx, site, meta) if ctx.entry(path) is not None]
        names = {n for n in _lines(ctx, meta / "top_level.txt") if _is_regular_top_level(ctx, site, n)}
        files = set(package_files(ctx, meta))
        if listed:
            files.update(path for path in listed if not set(path.relative_to(site).parts) & PACKAGE_SKIP_DIRS)
            tops = {_module_name(path.relative_to(site).parts[0]) for path in listed}
            names |= {n for n in tops if n and _is_regular_top_level(ctx, site, n)}
        else:
            for name in names:
                found = package_files(ctx, site / name) if ctx.is_dir(site / name) else _module_files(ctx, site, name)
                files.update(found)
        package = Package(meta, tuple(sorted(files)))
        for path in listed:
            by_file.setdefault(path, package)
        for name in names:
            by_name.setdefault(name, package)
    return by_file, by_name


def _is_regular_top_level(ctx: RuleContext, site: PurePosixPath, name: str) -> bool:
    """A package with an __init__.py, or a module: not a namespace directory other distributions share."""
    if ctx.is_dir(site / name):
        return ctx.is_file(site / name / "__init__.py")
    return bool(_module_files(ctx, site, name))


def _listed_files(ctx: RuleContext, site: PurePosixPath, meta: PurePosixPath) -> list[PurePosixPath]:
    """Files a RECORD (paths relative to the site directory) or installed-files.txt (relative to the
    .egg-info) lists, inside the site directory."""
    if meta.name.endswith(".dist-info"):
        rows = csv.reader(io.StringIO("\n".join(_lines(ctx, meta / "RECORD"))))
        names, base = [row[0] for row in rows if row], site
    else:
        names, base = _lines(ctx, meta / "installed-files.txt"), meta
    listed = (P(posixpath.normpath(str(base / name))) for name in names)
    return [path for path in listed if site in path.parents]


def _lines(ctx: RuleContext, path: PurePosixPath) -> list[str]:
    if not ctx.is_file(path):
        return []
    return [line.strip() for line in os.fsdecode(ctx.rootfs.read(path)).splitlines() if line.strip()]


# ---- Node


def _node_package(ctx: RuleContext, path: PurePosixPath) -> Package | None:
    root = node_package_root(path)
    if root is None or not ctx.is_dir(root):
        return None
    return Package(root, tuple(package_files(ctx, root)))


def node_package_root(path: PurePosixPath) -> PurePosixPath | None:
    """The package directory a path belongs to: the name (or @scope/name) right below the innermost
    node_modules, or below Debian's /usr/share/nodejs and /usr/lib/nodejs."""
    parts = path.parts
    modules = [i for i, part in enumerate(parts) if part == "node_modules"]
    if modules:
        base = modules[-1] + 1
    else:
        top = next((d for d in NODE_GLOBAL_DIRS if d in path.parents), None)
        if top is None:
            return None
        base = len(top.parts)
    rest = parts[base:]
    if not rest or rest[0].startswith("."):
        return None
    if rest[0].startswith("@"):
        return P(*parts[: base + 2]) if len(rest) > 1 else None
    return P(*parts[: base + 1])


# ---- Ruby


def ruby_package(ctx: RuleContext, path: PurePosixPath) -> Package | None:
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "gems" and ctx.is_dir(P(*parts[:i]) / "specifications"):
            root = P(*parts[: i + 2])
            spec = P(*parts[:i]) / "specifications" / f"{parts[i + 1]}.gemspec"
            return Package(root, tuple(package_files(ctx, root)) + ((spec,) if ctx.is_file(spec) else ()))
    if "vendor_ruby" in parts:
        i = parts.index("vendor_ruby") + 1
        if re.fullmatch(r"\d+(\.\d+)+", parts[i] if i < len(parts) else ""):
            i += 1  # an arch directory's version level
        if i >= len(parts):
            return None
        base, name = P(*parts[:i]), parts[i].removesuffix(".rb")
        members = package_files(ctx, base / name) + ([base / f"{name}.rb"] if ctx.is_file(base / f"{name}.rb") else [])
        return Package(base / name, tuple(members))
    return None
