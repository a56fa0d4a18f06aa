"""Rules that keep what a run will need, not only what it touched.

A trace sees the code paths that ran. Interpreted applications load code and data lazily (a route imports
a module on its first request, a database opens a relation file on the first query), so an image made of
the touched files alone passes the slimming run and fails on the first request nobody probed. Each rule
here is one small unit: a name (for `--no-rule NAME`), the ReasonKind its paths carry, and a `keep`
function that, given the image, the trace and what the closure keeps so far, names more paths to keep.

compute_closure applies the enabled rules, follows the ELF dependencies and `#!` lines of what they added,
and applies them again until nothing new comes. Rules only read the rootfs index; they are idempotent, and
a symlink a rule keeps is followed by the closure (its target is kept too).
"""
from __future__ import annotations

import csv
import enum
import io
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .model import CONFIG_READ_LIMIT, ROOT, EntryKind, FileEntry, ImageFacts, Reason, ReasonKind
from .rootfs import RootFS

P = PurePosixPath
Keep = tuple[PurePosixPath, Reason]

APP_FILES_MODES = ("none", "touched", "all")
SCAN_CHUNK = 1 << 20
STEP_TEXT_LIMIT = 60  # characters of a Dockerfile step quoted in a reason


# ---------------------------------------------------------------- what a rule sees


@dataclass
class RuleContext:
    """What the rules read. `kept` is the closure's live view (it grows between rounds); `memo` lets a
    rule remember work (a parsed RECORD, a scanned binary) across rounds."""

    rootfs: RootFS
    facts: ImageFacts
    traced: frozenset[PurePosixPath]  # where the run's paths led inside the image (existing entries only)
    kept: Mapping[PurePosixPath, Sequence[Reason]]
    library_dirs: tuple[PurePosixPath, ...]  # the loader's search directories (ld.so.conf, then defaults)
    entrypoint_script: PurePosixPath | None = None  # the script the command runs (see closure)
    layer_steps: tuple[str, ...] | None = None  # Dockerfile step behind each layer, bottom first; None: unknown
    app_files: str = "all"
    memo: dict = field(default_factory=dict)
    notes: dict[str, None] = field(default_factory=dict)  # what a rule could not resolve, for the warnings

    def entry(self, path: PurePosixPath) -> FileEntry | None:
        return self.rootfs.get(path)

    def is_dir(self, path: PurePosixPath) -> bool:
        entry = self.rootfs.get(path)
        return entry is not None and entry.kind is EntryKind.DIR

    def is_file(self, path: PurePosixPath) -> bool:
        entry = self.rootfs.get(path)
        return entry is not None and entry.kind is EntryKind.FILE

    def kept_files(self) -> list[FileEntry]:
        entries = (self.rootfs.get(path) for path in list(self.kept))
        return [e for e in entries if e is not None and e.kind is EntryKind.FILE]

    def once(self, key: object) -> bool:
        """True the first time `key` is asked about: work a rule need not redo in a later round."""
        done = self.memo.setdefault("once", set())
        if key in done:
            return False
        done.add(key)
        return True


@dataclass(frozen=True)
class Rule:
    name: str  # for --no-rule
    kind: ReasonKind  # what the paths it keeps are kept for
    summary: str  # one line for `slim build --help` and the README
    keep: Callable[[RuleContext], Iterable[Keep]]


# ---------------------------------------------------------------- walking trees with exceptions


Skip = Callable[[tuple[str, ...], FileEntry], bool]


def walk(rootfs: RootFS, top: PurePosixPath, skip: Skip = lambda *_: False) -> Iterator[FileEntry]:
    """`top` and everything below it, except the entries (and their subtrees) `skip` names; `skip` gets
    the path relative to `top` as parts."""
    if rootfs.get(top) is None:
        return
    stack = [top]
    while stack:
        path = stack.pop()
        entry = rootfs.get(path)
        if entry is None:
            continue
        relative = path.parts[len(top.parts):]
        if relative and skip(relative, entry):
            continue
        yield entry
        if entry.kind is EntryKind.DIR:
            stack.extend(reversed(rootfs.children(path)))


def _under(path: PurePosixPath, top: PurePosixPath) -> bool:
    return path == top or top in path.parents


# ---------------------------------------------------------------- 1. application files


class StepKind(enum.Enum):
    BASE = "base"  # the base image's root filesystem (an imported tarball, ADD ... /)
    COPY = "copy"  # COPY or ADD of the build context or another stage
    OS_PACKAGES = "os-packages"  # a RUN step that runs the distribution's package manager
    RUN = "run"  # any other RUN step
    OTHER = "other"  # metadata steps (ENV, WORKDIR, ...), when they made a layer at all


# The classic builder writes non-RUN steps as `/bin/sh -c #(nop) COPY ...`, BuildKit as `COPY ... # buildkit`.
_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")
_BUILDKIT = re.compile(r"\s*# buildkit$")
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
    text = _NOP.sub("", _BUILDKIT.sub("", created_by.strip()))
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
        why = next((why for root, why in roots if _under(entry.path, root) and entry.path != root), None)
        if why is None and kind is StepKind.COPY:
            why = "copied into the image"
        if why is None or (ctx.app_files == "touched" and entry.path.parent not in touched):
            continue
        step = ctx.layer_steps[entry.layer] if ctx.layer_steps is not None else ""
        yield entry.path, Reason(ReasonKind.APP_FILE, source=f"layer {entry.layer}{_quote(step)}", detail=why)


def _quote(step: str) -> str:
    text = _NOP.sub("", _BUILDKIT.sub("", step.strip()))
    if not text:
        return ""
    return f" ({text[:STEP_TEXT_LIMIT]}…)" if len(text) > STEP_TEXT_LIMIT else f" ({text})"


# ---------------------------------------------------------------- 2. language packages


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
    return _python_package(ctx, path) or _node_package(ctx, path) or _ruby_package(ctx, path)


def _package_files(ctx: RuleContext, top: PurePosixPath) -> list[PurePosixPath]:
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
    by_file, by_name = _python_distributions(ctx, site)
    top = relative[0]
    if top == "__pycache__" and len(relative) > 1:
        top = relative[1].split(".", 1)[0]  # six.cpython-311.pyc belongs to six.py
    dist = by_file.get(path) or by_name.get(top) or by_name.get(_module_name(top))
    if dist is not None:
        return dist
    if ctx.is_dir(site / top):
        package = _outermost_regular_package(ctx, site, relative)
        return Package(package, tuple(_package_files(ctx, package)))
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


def _python_distributions(ctx: RuleContext, site: PurePosixPath) -> Distributions:
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
        files = set(_package_files(ctx, meta))
        if listed:
            files.update(path for path in listed if not set(path.relative_to(site).parts) & PACKAGE_SKIP_DIRS)
            tops = {_module_name(path.relative_to(site).parts[0]) for path in listed}
            names |= {n for n in tops if n and _is_regular_top_level(ctx, site, n)}
        else:
            for name in names:
                found = _package_files(ctx, site / name) if ctx.is_dir(site / name) else _module_files(ctx, site, name)
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
    return Package(root, tuple(_package_files(ctx, root)))


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


def _ruby_package(ctx: RuleContext, path: PurePosixPath) -> Package | None:
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "gems" and ctx.is_dir(P(*parts[:i]) / "specifications"):
            root = P(*parts[: i + 2])
            spec = P(*parts[:i]) / "specifications" / f"{parts[i + 1]}.gemspec"
            return Package(root, tuple(_package_files(ctx, root)) + ((spec,) if ctx.is_file(spec) else ()))
    if "vendor_ruby" in parts:
        i = parts.index("vendor_ruby") + 1
        if re.fullmatch(r"\d+(\.\d+)+", parts[i] if i < len(parts) else ""):
            i += 1  # an arch directory's version level
        if i >= len(parts):
            return None
        base, name = P(*parts[:i]), parts[i].removesuffix(".rb")
        members = _package_files(ctx, base / name) + ([base / f"{name}.rb"] if ctx.is_file(base / f"{name}.rb") else [])
        return Package(base / name, tuple(members))
    return None


# ---------------------------------------------------------------- 3. runtimes


_PYTHON = re.compile(r"python(\d+\.\d+)|libpython(\d+\.\d+)\w*\.so[.\d]*")
_RUBY = re.compile(r"ruby(\d+\.\d+)?|libruby(?:-|\.so\.)(\d+\.\d+)[.\w]*")
_NODE = re.compile(r"node|nodejs|libnode\.so[.\d]*")
_JVM = re.compile(r"libjvm\.so")
# What of Python's standard library no import graph sees (slim/reach.py follows the imports): the landmark
# the interpreter finds its prefix by, site and sitecustomize (imported by the interpreter at start), the
# codec registry (the codecs it imports by name are followed by slim/reach.py), sysconfig's data (its module
# name is computed), lib-dynload itself.
PYTHON_UNSEEN = ("os.py", "site.py", "sitecustomize.py", "encodings/__init__.py", "encodings/aliases.py", "lib-dynload")
_SYSCONFIGDATA = re.compile(r"_sysconfigdata_.*\.py")
JDK_SKIP_FILES = frozenset({"src.zip", "ct.sym"})  # sources and javac's symbol file: never read at run time
_NODE_PACKAGE_PATH = re.compile(rb"/usr/(?:share|lib)/nodejs/((?:@[\w.-]+/)?[\w.-]+)")


def keep_runtimes(ctx: RuleContext) -> Iterator[Keep]:
    """When an interpreter or VM is kept, what of its standard library and native helpers no import graph
    sees, because error paths and rarely used features load lazily: Python's codecs, site, sysconfig's
    data and the prefix landmark (slim/reach.py follows the rest of its imports); Ruby's stdlib and its native
    extensions; a JDK's lib/ (module image and native libraries) and conf/; the node packages Debian's
    node loads from /usr/share/nodejs (named inside its binary)."""
    for entry in ctx.kept_files():
        name = entry.path.name
        if match := _PYTHON.fullmatch(name):
            if entry.mode & 0o111 or match[2]:
                yield from _python_stdlib(ctx, entry.path, match[1] or match[2])
        elif match := _RUBY.fullmatch(name):
            if entry.mode & 0o111 or match[2]:
                yield from _ruby_stdlib(ctx, entry.path, match[1] or match[2])
        elif _NODE.fullmatch(name) and (entry.mode & 0o111 or name.startswith("lib")):
            yield from _node_builtin_packages(ctx, entry.path)
        elif _JVM.fullmatch(name) or (name == "java" and entry.mode & 0o111):
            yield from _jdk(ctx, entry.path)


def _python_stdlib(ctx: RuleContext, program: PurePosixPath, version: str) -> Iterator[Keep]:
    prefixes = [program.parent.parent, P("/usr"), P("/usr/local")]
    prefixes += [a.parent for a in program.parents if a.name in ("lib", "lib64")]
    reason = Reason(ReasonKind.RUNTIME, source=str(program), detail=f"Python {version} standard library")
    for prefix in dict.fromkeys(prefixes):
        stdlib = prefix / "lib" / f"python{version}"
        if not ctx.is_file(stdlib / "os.py") or not ctx.once(("python", stdlib)):
            continue
        names = [stdlib / name for name in PYTHON_UNSEEN if ctx.entry(stdlib / name) is not None]
        names += [child for child in ctx.rootfs.children(stdlib) if _SYSCONFIGDATA.fullmatch(child.name)]
        for name in names:
            top_only = name.name == "lib-dynload"  # its extension modules are imported (or not) by name
            for entry in walk(ctx.rootfs, name, lambda rel, e: top_only or rel[-1] == "__pycache__"):
                yield entry.path, reason


def _ruby_stdlib(ctx: RuleContext, program: PurePosixPath, version: str | None) -> Iterator[Keep]:
    """<prefix>/lib/ruby/X.Y.0 and the native extensions in <prefix>/lib/<arch>/ruby/X.Y.0 (Debian)."""
    reason = Reason(ReasonKind.RUNTIME, source=str(program), detail="Ruby standard library")
    wanted = re.compile(re.escape(version) + r"\.\d+" if version else r"\d+\.\d+\.\d+")
    for prefix in dict.fromkeys([program.parent.parent, P("/usr"), P("/usr/local")]):
        lib = prefix / "lib"
        homes = [lib / "ruby"] + [c / "ruby" for c in ctx.rootfs.children(lib) if ctx.is_dir(c / "ruby")]
        for home in homes:
            for stdlib in ctx.rootfs.children(home):
                if wanted.fullmatch(stdlib.name) and ctx.is_dir(stdlib) and ctx.once(("ruby", stdlib)):
                    for entry in walk(ctx.rootfs, stdlib, _skip_developer_dirs):
                        yield entry.path, reason


def _skip_developer_dirs(relative: tuple[str, ...], entry: FileEntry) -> bool:
    return entry.kind is EntryKind.DIR and relative[-1] in PACKAGE_SKIP_DIRS


def _jdk(ctx: RuleContext, program: PurePosixPath) -> Iterator[Keep]:
    """The JDK (or JRE) home of libjvm.so (home/lib/server/libjvm.so; home/jre/lib/amd64/server in Java 8)
    or of home/bin/java: its lib/ whole (module image, native libraries, tzdb, security), conf/, release."""
    if program.name == "java":
        lib = program.parent.parent / "lib" if program.parent.name == "bin" else None
    else:
        lib = next((a for a in program.parents if a.name == "lib"), None)
    landmarks = ("modules", "server", "rt.jar", "amd64", "jvm.cfg")
    if lib is None or not any(ctx.entry(lib / name) is not None for name in landmarks):
        return  # not a JDK's lib/ (a `java` that is a wrapper script, or libjvm outside a JDK layout)
    if not ctx.once(("jdk", lib)):
        return
    home = lib.parent
    reason = Reason(ReasonKind.RUNTIME, source=str(program), detail=f"JDK {home}")
    for top in (lib, home / "conf", home / "release"):
        for entry in walk(ctx.rootfs, top, lambda rel, e: rel[-1] in JDK_SKIP_FILES):
            yield entry.path, reason


def _node_builtin_packages(ctx: RuleContext, program: PurePosixPath) -> Iterator[Keep]:
    """Debian builds node against packaged copies of its bundled modules (undici for fetch, acorn,
    cjs-module-lexer) and names them by absolute path inside libnode: those packages are node's own."""
    if not ctx.once(("node", program)):
        return
    reason = Reason(ReasonKind.RUNTIME, source=str(program), detail="node's bundled modules")
    for name in sorted(_embedded_node_packages(ctx.rootfs, program)):
        for top in NODE_GLOBAL_DIRS:
            if ctx.is_dir(top / name):
                for member in _package_files(ctx, top / name):
                    yield member, reason


def _embedded_node_packages(rootfs: RootFS, path: PurePosixPath) -> set[str]:
    return {os.fsdecode(m[1]) for chunk in _chunks(rootfs, path) for m in _NODE_PACKAGE_PATH.finditer(chunk)}


# ---------------------------------------------------------------- data sets read by name


TIMEZONE_DIRS = tuple(P(p) for p in ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo"))
# right/ holds the leap-second variants (only TZ=right/... reads them); the rest are zic's sources and tables.
TIMEZONE_SKIP = frozenset({"right", "tzdata.zi", "leapseconds", "leap-seconds.list", "zone.tab", "zone1970.tab",
                           "iso3166.tab", "zonenow.tab"})
LOCALTIME = P("/etc/localtime")


def keep_timezone_data(ctx: RuleContext) -> Iterator[Keep]:
    """The timezone database, once the run read /etc/localtime or any zone: a zone is looked up by name
    (TZ=..., zoneinfo.ZoneInfo("Europe/Paris")) on the first request that needs it. Every zone file is
    kept; the leap-second variants (right/) and zic's text sources and tables are not."""
    for database in TIMEZONE_DIRS:
        touched = [path for path in ctx.traced if _under(path, database) or path == LOCALTIME]
        if not touched or not ctx.is_dir(database) or not ctx.once(("timezone", database)):
            continue
        reason = Reason(ReasonKind.TIMEZONE, source=str(database), detail=f"used: {min(touched)}")
        for entry in walk(ctx.rootfs, database, lambda rel, e: rel[0] in TIMEZONE_SKIP):
            yield entry.path, reason
        for extra in (LOCALTIME, P("/etc/timezone")):
            if ctx.entry(extra) is not None:
                yield extra, reason


_TLS_LIBRARY = re.compile(r"lib(ssl|gnutls|mbedtls|wolfssl|nss3)\b[\w.-]*\.so[.\d]*")
CA_LOCATIONS = tuple(
    P(p) for p in (
        "/etc/ssl/certs", "/etc/ssl/cert.pem", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/certs", "/usr/lib/ssl/cert.pem",
        "/usr/lib/ssl/openssl.cnf", "/etc/pki/tls/certs",
        "/etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted", "/etc/ca-certificates",
    )
)


def keep_ca_certificates(ctx: RuleContext) -> Iterator[Keep]:
    """The CA certificates (the bundle and the hashed directory with the certificates it links to) and
    OpenSSL's configuration, once a TLS library is kept or any of them was read: the first HTTPS
    request verifies a server against them."""
    tls = next((e.path for e in ctx.kept_files() if _TLS_LIBRARY.fullmatch(e.path.name)), None)
    read = next((p for p in sorted(ctx.traced) if any(_under(p, top) for top in CA_LOCATIONS)), None)
    cause = tls or read
    if cause is None or not ctx.once("ca-certificates"):
        return
    reason = Reason(ReasonKind.CA_CERTIFICATES, source=str(cause), detail="TLS library kept" if tls else "read")
    for top in CA_LOCATIONS:
        for entry in walk(ctx.rootfs, top):
            yield entry.path, reason


# ---------------------------------------------------------------- 5. known runtime needs


NSSWITCH = P("/etc/nsswitch.conf")
# glibc's resolver and NSS dispatcher: inside libc.so.6 since glibc 2.34, in libresolv and libnss_* before.
_RESOLVER = re.compile(r"libc\.so\.6|libc-2\.\d+\.so|libresolv\.so[.\d]*|libnss_\w+\.so[.\d]*")
NAME_SERVICE_FILES = tuple(P(p) for p in ("/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols"))
# Since glibc 2.34 these services are built into libc.so.6; their libnss_*.so.2 are empty stubs it never loads.
BUILTIN_NSS_SERVICES = frozenset({"files", "dns"})
_GLIBC_234 = re.compile(rb"GLIBC_2\.(3[4-9]|[4-9]\d)\x00")


def keep_nss(ctx: RuleContext) -> Iterator[Keep]:
    """When name resolution can be used (nsswitch.conf read, glibc's resolver loaded: it is part of libc.so.6
    since glibc 2.34, so any glibc program can resolve a name on its first outgoing connection):
    nsswitch.conf, the NSS module of every service it names (libnss_<service>.so.2, dlopened by libc),
    and the files getaddrinfo and getservbyname read. A few tens of kilobytes."""
    resolver = next((e.path for e in ctx.kept_files() if _RESOLVER.fullmatch(e.path.name)), None)
    cause = NSSWITCH if NSSWITCH in ctx.traced else resolver
    if cause is None or not ctx.is_file(NSSWITCH) or not ctx.once("nss"):
        return
    reason = Reason(ReasonKind.NSS, source=str(cause), detail="name resolution")
    yield NSSWITCH, reason
    for path in NAME_SERVICE_FILES:
        if ctx.entry(path) is not None:
            yield path, reason
    services = nss_services(os.fsdecode(ctx.rootfs.read(NSSWITCH, limit=CONFIG_READ_LIMIT)))
    if any(_has_builtin_nss(ctx.rootfs, e.path) for e in ctx.kept_files() if _LIBC.fullmatch(e.path.name)):
        services -= BUILTIN_NSS_SERVICES
    for service in sorted(services):
        for directory in ctx.library_dirs:
            module = ctx.rootfs.resolve(directory / f"libnss_{service}.so.2")
            if module.exists and ctx.is_file(module.path):
                yield module.path, reason
                break


_LIBC = re.compile(r"libc\.so\.6|libc-2\.\d+\.so")


def _has_builtin_nss(rootfs: RootFS, libc: PurePosixPath) -> bool:
    """A glibc of 2.34 or later (it defines the symbol version GLIBC_2.34)."""
    return any(_GLIBC_234.search(chunk) for chunk in _chunks(rootfs, libc))


def _chunks(rootfs: RootFS, path: PurePosixPath) -> Iterator[bytes]:
    """The file's bytes in overlapping chunks, for searching short patterns."""
    overlap = b""
    with rootfs.open(path) as data:
        while chunk := data.read(SCAN_CHUNK):
            yield overlap + chunk
            overlap = chunk[-256:]


def nss_services(text: str) -> set[str]:
    """Every service nsswitch.conf names ("hosts: files [NOTFOUND=return] dns" -> files, dns)."""
    services = set()
    for line in text.splitlines():
        database, colon, rest = line.split("#", 1)[0].partition(":")
        if colon and database.strip():
            services.update(re.findall(r"(?<![\[=\w])([A-Za-z][\w-]*)(?![\w=\]])", re.sub(r"\[[^\]]*\]", " ", rest)))
    return services


def keep_gconv(ctx: RuleContext) -> Iterator[Keep]:
    """All of glibc's gconv modules once iconv used one (a module loaded, or gconv-modules read): the
    next conversion may name another charset. gconv-modules.cache alone is read by every program that
    sets a locale and says nothing about iconv."""
    for directory in dict.fromkeys(d / "gconv" for d in ctx.library_dirs):
        if not ctx.is_dir(directory):
            continue
        config = [p for p in ctx.traced if p.parent == directory and p.name == "gconv-modules"
                  or _under(p, directory / "gconv-modules.d")]
        modules = [p for p in ctx.kept if p.parent == directory and p.suffix == ".so"]
        cause = min(config + modules, default=None)
        if cause is None or not ctx.once(("gconv", directory)):
            continue
        reason = Reason(ReasonKind.GCONV, source=str(cause), detail="iconv")
        for entry in walk(ctx.rootfs, directory):
            yield entry.path, reason


LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_COLLATE", "LC_NUMERIC", "LC_TIME", "LC_MONETARY", "LANG")
LOCALE_DIRS = tuple(P(p) for p in ("/usr/lib/locale", "/usr/lib64/locale", "/usr/local/lib/locale"))
LOCALE_ALIASES = tuple(P(p) for p in ("/usr/share/locale/locale.alias", "/etc/locale.alias"))


def keep_locale(ctx: RuleContext) -> Iterator[Keep]:
    """The compiled locale the image's Env sets (LANG, LC_ALL, LC_*): its directory under /usr/lib/locale,
    or the locale archive when the locale is only in there, and locale.alias."""
    env = ctx.facts.env
    names = {env[v] for v in LOCALE_VARIABLES if env.get(v) and env[v] not in ("C", "POSIX")}
    if not names or not ctx.once("locale"):
        return
    for name in sorted(names):
        reason = Reason(ReasonKind.LOCALE, source=name, detail="set by the image's Env")
        found = False
        for directory in LOCALE_DIRS:
            for candidate in locale_candidates(name):
                if ctx.is_dir(directory / candidate):
                    found = True
                    for entry in walk(ctx.rootfs, directory / candidate):
                        yield entry.path, reason
            if not found and ctx.is_file(directory / "locale-archive"):
                yield directory / "locale-archive", reason
        for alias in LOCALE_ALIASES:
            if ctx.entry(alias) is not None:
                yield alias, reason


def locale_candidates(name: str) -> list[str]:
    """The directory names glibc tries for a locale: language[_territory][.codeset][@modifier], with the
    codeset as written and normalised (UTF-8 -> utf8), then with less and less of it."""
    match = re.fullmatch(r"([^_.@]+)(_[^.@]+)?(\.[^@]+)?(@.+)?", name)
    if not match:
        return [name]
    language, territory, codeset, modifier = (part or "" for part in match.groups())
    normal = ""
    if codeset:
        normal = "".join(c.lower() for c in codeset[1:] if c.isalnum())
        normal = "." + ("iso" + normal if normal.isdigit() else normal)
    forms = [name]
    for cs in dict.fromkeys(c for c in (codeset, normal, "") if c is not None):
        for terr in (territory, ""):
            for mod in (modifier, ""):
                forms.append(f"{language}{terr}{cs}{mod}")
    return list(dict.fromkeys(forms))


# ---------------------------------------------------------------- 4. directories that matter


def keep_empty_subdirectories(ctx: RuleContext) -> Iterator[Keep]:
    """Below every directory the run listed or opened, the subdirectories that hold no files: a program
    that creates nothing at start expects them (a database's pg_tblspc, pg_wal/archive_status). They
    cost no bytes."""
    if not ctx.once("empty-subdirectories"):
        return
    used = {path for path in ctx.traced if ctx.is_dir(path)}
    for directory in sorted(_empty_trees(ctx.rootfs)):
        owner = next((p for p in directory.parents if p in used), None)
        if owner is not None:
            yield directory, Reason(ReasonKind.EMPTY_DIRECTORY, source=str(owner))


def _empty_trees(rootfs: RootFS) -> set[PurePosixPath]:
    """Directories with nothing but (empty-tree) directories below them."""
    empty: set[PurePosixPath] = set()
    entries = [e for e in rootfs.walk(ROOT) if e.kind is EntryKind.DIR]
    for entry in reversed(entries):  # children before parents
        if all(child in empty for child in rootfs.children(entry.path)):
            empty.add(entry.path)
    return empty


def keep_data_trees(ctx: RuleContext) -> Iterator[Keep]:
    """A tree of data owned by a non-root user is kept whole once the run touched it: a database opens
    relation segments, WAL and state files lazily (the first query, a checkpoint), and a half-copied
    data directory is corruption. The tree is the highest directory the same user owns above what was
    touched; a tree holding programs (an executable file) is code, not data, and is left to the other
    rules; tool caches inside are not kept."""
    for path in sorted(ctx.traced):
        entry = ctx.entry(path)
        if entry is None or entry.uid == 0:
            continue
        top = path if entry.kind is EntryKind.DIR else path.parent
        if (owner := ctx.entry(top)) is None or owner.uid != entry.uid:
            continue
        while top.parent != top and (above := ctx.entry(top.parent)) is not None and above.uid == entry.uid:
            top = top.parent
        if top == ROOT or not ctx.once(("data-tree", top)):
            continue
        members = list(walk(ctx.rootfs, top, lambda rel, e: e.kind is EntryKind.DIR and rel[-1] in VCS_AND_CACHES))
        if any(m.kind is EntryKind.FILE and m.mode & 0o111 for m in members):
            continue
        reason = Reason(ReasonKind.DATA_TREE, source=str(top), detail=f"owned by {entry.uname or entry.uid}")
        for member in members:
            yield member.path, reason
