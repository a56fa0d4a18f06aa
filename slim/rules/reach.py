"""Rules that keep what deployed code can reach although the traced run did not go there (issue 10).

Each reads the code and manifests the closure keeps, never runs them (the readers are in slim/static_analysis/):
the modules kept Python modules can import (pyscan.py reads them, pyimports.py resolves them), the packages
an app declares (manifests.py), the commands its entrypoint scripts can run (shellscripts.py), the programs
its code starts by name (programs.py), and the configuration the image's own build wrote under /etc. What cannot be resolved statically (a name held in a
variable) is said in the build's warnings.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from packaging.utils import canonicalize_name

from slim.model import EntryKind, FileEntry, Reason, ReasonKind, under_any
from slim.static_analysis.manifests import (
    gemfile_lock_gems,
    lock_installed,
    node_manifest,
    pyproject_dependencies,
    python_environment,
    requirement_lines,
    requires_dist,
    requires_txt,
)
from slim.image.package_db import dpkg_owned_paths
from slim.static_analysis.programs import language_of, programs_in
from .node_requires import keep_node_requires, node_resolve
from .ruby_requires import keep_ruby_requires
from slim.static_analysis.pyimports import (
    ModuleFinder,
    codec_aliases,
    codec_module,
    import_succeeds,
    imported_files,
)
from slim.static_analysis.pyscan import ModuleImports
from slim.static_analysis.scancache import ScanCache
from slim.adapters.c_helpers import cache_dir
from .base import Keep, RuleContext, walk
from .app_files import step_kind, StepKind
from .packages import PACKAGE_SKIP_DIRS, Package, package_files, python_distributions, ruby_package
from .data_sets import TIMEZONE_DIRS, TIMEZONE_SKIP
from slim.static_analysis.shellscripts import is_shell_script, scan_script

P = PurePosixPath
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's default
_PYTHON_PROGRAM = re.compile(r"python(\d+\.\d+)|libpython(\d+\.\d+)\w*\.so[.\d]*")
# NUL-terminated names inside an interpreter or extension module: what its C code may import by name.
_C_STRING = re.compile(rb"(?<=\x00)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\x00")
C_SCAN_LIMIT = 64 << 20
# The interpreter names every standard module (sys.stdlib_module_names), so its own C-level imports are
# listed instead: time.strptime's and datetime's _strptime, pickling's copyreg, tracebacks' linecache.
INTERPRETER_IMPORTS = ("_strptime", "copyreg", "linecache", "traceback", "warnings", "_sitebuiltins", "_weakrefset")
# Codecs the interpreter and the standard library look up by name all the time (files, sockets' idna).
BASIC_CODECS = ("utf_8", "utf_8_sig", "ascii", "latin_1", "idna", "punycode", "raw_unicode_escape", "unicode_escape",
                "utf_16", "utf_32", "charmap")
LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LANG")
# Parts of the standard library an application does not run: its test suite, GUI and teaching tools, the
# package installer's bootstrap, pydoc's help topics and 2to3 (as before the import graph, they stay out).
STDLIB_HIDDEN = ("test", "idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "pydoc_data", "lib2to3")


# ---------------------------------------------------------------- Python's import graph


def python_search_path(ctx: RuleContext) -> tuple[PurePosixPath, ...]:
    """sys.path of the kept Python interpreters, as far as the image decides it: the script's directory,
    PYTHONPATH, the standard library with lib-dynload, then the site directories (Debian's and pip's)."""
    versions = _python_versions(ctx)
    if not versions:
        return ()
    head = [script.parent for script in _main_scripts(ctx)]
    if "-m" in ctx.facts.command:
        head.append(ctx.facts.working_dir)  # python -m module: the current directory comes first
    head += [P(d) for d in ctx.facts.env.get("PYTHONPATH", "").split(":") if d.startswith("/")]
    tail = []
    for version in versions:
        for prefix in (P("/usr/local"), P("/usr"), P("/opt/python")):
            stdlib = prefix / "lib" / f"python{version}"
            tail += [stdlib, stdlib / "lib-dynload", stdlib / "site-packages", stdlib / "dist-packages"]
        tail.append(P("/usr/lib/python3/dist-packages"))
    return tuple(d for d in dict.fromkeys(head + tail) if ctx.is_dir(d))


def _python_versions(ctx: RuleContext) -> list[str]:
    """The versions of the Python interpreters kept (a python3.X program or libpython3.X)."""
    return sorted({m[1] or m[2] for e in ctx.kept_files() if (m := _PYTHON_PROGRAM.fullmatch(e.path.name))
                   and (e.mode & 0o111 or m[2])})


def _main_scripts(ctx: RuleContext) -> list[PurePosixPath]:
    """The Python files the container's command runs as __main__ (python3 /app/app.py, also behind an
    entrypoint script that ends in `exec "$@"`)."""
    return ctx.made_once("python-main", lambda: _named_scripts(ctx))


def _named_scripts(ctx: RuleContext) -> list[PurePosixPath]:
    named = [ctx.rootfs.resolve(P(arg), cwd=ctx.facts.working_dir) for arg in ctx.facts.command if arg.endswith(".py")]
    scripts = [r.path for r in named if r.exists and ctx.is_file(r.path)]
    script = ctx.entrypoint_script
    if script is not None and (script.suffix == ".py" or _is_python_script(ctx, script)):
        scripts.append(script)
    return scripts


def keep_imports(ctx: RuleContext) -> Iterator[Keep]:
    """What kept Python modules can import, and kept Ruby and JavaScript files can require."""
    yield from keep_python_imports(ctx)
    yield from keep_ruby_requires(ctx)
    yield from keep_node_requires(ctx)


def keep_python_imports(ctx: RuleContext) -> Iterator[Keep]:
    """Every module a kept Python module can import, at any depth, resolved over the image's sys.path;
    for an import call with a computed name, the caller's whole package; for interpreters and extension
    modules, the modules their C code names; the timezone database once zoneinfo can be imported."""
    search_path = ctx.found_once("python-path", lambda: python_search_path(ctx))
    if not search_path:
        return
    # One for every round: it memoises what it finds.
    finder = ctx.made_once(("python-finder", search_path), lambda: _module_finder(ctx, search_path))
    entries = list(ctx.kept_files_new_to("python-imports"))
    modules = [entry.path for entry in entries if entry.path.suffix == ".py" or _is_python_script(ctx, entry.path)]
    # All of the round's modules at once: the ones new to the cache are parsed on two cores when they are many.
    scans = ctx.made_once("python-scans", lambda: ScanCache(cache_dir()))
    found = dict(zip(modules, scans.scan_many([(ctx.rootfs.read(m), m in _main_scripts(ctx)) for m in modules])))
    for entry in entries:
        if entry.path in found:
            yield from _module_imports(ctx, finder, entry.path, found[entry.path])
        elif _PYTHON_PROGRAM.fullmatch(entry.path.name):
            reason = Reason(ReasonKind.IMPORT, source=str(entry.path), detail="imported by the interpreter")
            for name in INTERPRETER_IMPORTS:
                yield from ((path, reason) for path in finder.find(name) or ())
        elif entry.path.suffix == ".so" and under_any(entry.path, search_path):
            yield from _c_level_imports(ctx, finder, entry.path)
        if entry.path.parent.name == "zoneinfo" and entry.path.name == "__init__.py":
            yield from _timezone_database(ctx, entry.path)


def _module_finder(ctx: RuleContext, search_path: tuple[PurePosixPath, ...]) -> ModuleFinder:
    stdlib = [d for d in search_path if d.name.startswith("python") and d.parent.name == "lib"]
    hidden = frozenset(d / name for d in stdlib for name in STDLIB_HIDDEN)
    return ModuleFinder(ctx.rootfs, search_path, hidden)


def _is_python_script(ctx: RuleContext, path: PurePosixPath) -> bool:
    head = ctx.rootfs.read(path, limit=128)
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def _module_imports(
    ctx: RuleContext, finder: ModuleFinder, module: PurePosixPath, found: ModuleImports | None
) -> Iterator[Keep]:
    if found is None:
        return
    for wanted in found.names:
        if wanted.fallback_for and all(import_succeeds(finder, module, tried) for tried in wanted.fallback_for):
            continue  # decimal's pure-Python _pydecimal, imported only where the C _decimal is missing
        for path in imported_files(finder, module, wanted) or ():
            yield path, Reason(ReasonKind.IMPORT, source=str(module), detail=str(wanted.line))
    # The standard library's own charset tables (aliases, locale, email.charset) name every codec there is.
    words = () if any(d in module.parents for d in _stdlib_dirs(finder)) else found.words
    for word, line in words:
        for path in _codec(ctx, finder, word):
            yield path, Reason(ReasonKind.IMPORT, source=str(module), detail=str(line))
    if module.parent.name == "encodings" and module.name == "__init__.py":
        yield from _basic_codecs(ctx, finder, module)
        return  # its search function imports the codec named at run time: the codec names are followed
    for line in found.dynamic_lines:
        package = finder.package_of(module)
        if package is None:
            if _is_library(finder, module):
                continue  # a library's own plugin or pickle loading: the library is kept as the graph reaches it
            ctx.notes[f"{module}:{line} imports a module whose name is computed: keep it with --include-path"] = None
            continue
        reason = Reason(ReasonKind.IMPORT, source=str(module), detail=str(line))
        for entry in walk(ctx.rootfs, package, _developer_files):
            yield entry.path, reason


def _codec(ctx: RuleContext, finder: ModuleFinder, name: str) -> list[PurePosixPath]:
    """The codec module a string names, if it names one (`"latin-1"` -> encodings/latin_1.py)."""
    found = []
    for encodings in (d / "encodings" for d in _stdlib_dirs(finder)):
        aliases = ctx.made_once(("codec-aliases", encodings), lambda: _codec_aliases(ctx, encodings))
        if aliases and (module := finder.module_file(encodings, codec_module(aliases, name))) is not None:
            found.append(module)
    return found


def _codec_aliases(ctx: RuleContext, encodings: PurePosixPath) -> dict[str, str]:
    source = ctx.rootfs.read(encodings / "aliases.py") if ctx.is_file(encodings / "aliases.py") else b""
    return codec_aliases(source) if source else {}


def _basic_codecs(ctx: RuleContext, finder: ModuleFinder, encodings: PurePosixPath) -> Iterator[Keep]:
    """The codecs of BASIC_CODECS and the locale's (LANG=C.UTF-8 -> utf_8)."""
    env = ctx.facts.env
    locale = next((env[v] for v in LOCALE_VARIABLES if env.get(v)), "")
    names = BASIC_CODECS + ((locale.partition(".")[2].partition("@")[0],) if "." in locale else ())
    reason = Reason(ReasonKind.IMPORT, source=str(encodings), detail="codecs looked up by name")
    for name in names:
        for path in _codec(ctx, finder, name):
            yield path, reason


def _stdlib_dirs(finder: ModuleFinder) -> list[PurePosixPath]:
    return [d for d in finder.search_path if d.name.startswith("python") and d.parent.name == "lib"]


def _is_library(finder: ModuleFinder, module: PurePosixPath) -> bool:
    """Part of the standard library or an installed distribution, not of the application."""
    names = ("lib-dynload", "site-packages", "dist-packages")
    return any(d in module.parents and (d.name in names or d.name.startswith("python")) for d in finder.search_path)


def _developer_files(relative: tuple[str, ...], entry) -> bool:
    return entry.kind is EntryKind.DIR and (relative[-1] in PACKAGE_SKIP_DIRS or relative[-1] == "__pycache__")


def _c_level_imports(ctx: RuleContext, finder: ModuleFinder, program: PurePosixPath) -> Iterator[Keep]:
    """Modules the C code of an interpreter or extension module imports by name (the time module's
    strptime imports _strptime, _pickle imports copyreg): the NUL-terminated names in the binary that
    are modules of the standard library. Not codec names: C code decodes with the basic codecs, and its
    short strings ("hz", "cp1252"-like) would name codecs it never uses."""
    stdlib = _stdlib_dirs(finder)
    data = ctx.rootfs.read(program, limit=C_SCAN_LIMIT)
    reason = Reason(ReasonKind.IMPORT, source=str(program), detail="named in its C code")
    for name in dict.fromkeys(m[1].decode() for m in _C_STRING.finditer(data)):
        for directory in stdlib:
            for path in finder.find_below(directory, name.split(".")) or ():
                yield path, reason


def _timezone_database(ctx: RuleContext, zoneinfo: PurePosixPath) -> Iterator[Keep]:
    reason = Reason(ReasonKind.TIMEZONE, source=str(zoneinfo), detail="zoneinfo can be imported")
    for database in TIMEZONE_DIRS:
        if ctx.is_dir(database) and ctx.once(("timezone", database)):
            for entry in walk(ctx.rootfs, database, lambda rel, e: rel[0] in TIMEZONE_SKIP):
                yield entry.path, reason


# ---------------------------------------------------------------- programs: PATH lookups


def which(ctx: RuleContext, name: str) -> PurePosixPath | None:
    """The program `name` runs as execvp(3) finds it in the image: a path as is, else the first executable
    file on the image's PATH (the path as found there; the closure follows a symlink to its file)."""
    path = ctx.facts.env.get("PATH", DEFAULT_PATH)
    candidates = [P(name)] if "/" in name else [P(d) / name for d in path.split(":") if d.startswith("/")]
    for candidate in candidates:
        resolved = ctx.rootfs.resolve(candidate, cwd=ctx.facts.working_dir)
        entry = ctx.rootfs.get(resolved.path) if resolved.exists else None
        if entry is not None and entry.kind is EntryKind.FILE and entry.mode & 0o111:
            return resolved.path if "/" in name else candidate
    return None


# ---------------------------------------------------------------- entrypoint scripts


def keep_script_commands(ctx: RuleContext) -> Iterator[Keep]:
    """Every command the entrypoint's shell script can run on any branch (and the scripts it sources or
    runs, in turn), resolved through the image's PATH, and the paths it tests with `[ -f ... ]`."""
    pending = [ctx.entrypoint_script] if ctx.entrypoint_script is not None else []
    done = ctx.memo.setdefault("shell-scripts", set())
    while pending:
        script = pending.pop()
        if script in done or not ctx.is_file(script) or not is_shell_script(ctx.rootfs.read(script, limit=256)):
            continue
        done.add(script)
        found = scan_script(ctx.rootfs.read(script))
        for command in found.commands:
            program = which(ctx, command.text)
            if program is None:
                ctx.notes[f"{command.text} (called by {script}:{command.line}) not found in the image"] = None
                continue
            yield program, Reason(ReasonKind.SCRIPT_COMMAND, source=str(script), detail=str(command.line))
            pending.append(ctx.rootfs.resolve(program).path)
        for use in found.tested + found.sourced:
            target = ctx.rootfs.resolve(P(use.text))
            if target.exists:
                yield P(use.text), Reason(ReasonKind.SCRIPT_COMMAND, source=str(script), detail=str(use.line))
                pending.append(target.path)
        for use in found.unresolved:
            ctx.notes[f"{script}:{use.line} runs a command named by {use.text}: keep it with --include-path"] = None


# ---------------------------------------------------------------- programs the app's code starts


def keep_named_programs(ctx: RuleContext) -> Iterator[Keep]:
    """The programs the application's own code starts by a literal name (subprocess.run(["zip", ...]),
    child_process.execFile("zip"), `zip ...` in Ruby, shell_exec("zip ...") in PHP), through PATH."""
    scanned = ctx.memo.setdefault("program-sources", set())
    for path, reasons in list(ctx.kept.items()):
        if path in scanned or not (path == ctx.entrypoint_script or any(r.kind is ReasonKind.APP_FILE for r in reasons)):
            continue
        scanned.add(path)
        if not ctx.is_file(path) or (language := language_of(path.name, ctx.rootfs.read(path, limit=128))) is None:
            continue
        for call in programs_in(language, ctx.rootfs.read(path)):
            program = which(ctx, call.program) if call.program else None
            if program is not None:
                yield program, Reason(ReasonKind.NAMED_PROGRAM, source=str(path), detail=str(call.line))
            elif call.program is None:
                ctx.notes[f"{path}:{call.line} runs a program named by {call.text}: keep it with --include-path"] = None
            else:
                ctx.notes[f"{call.program} (run by {path}:{call.line}) not found in the image"] = None


# ---------------------------------------------------------------- the image's own configuration


ETC = P("/etc")


def keep_own_configuration(ctx: RuleContext) -> Iterator[Keep]:
    """Files under /etc that the image's own layers (above the base image's root filesystem) added or
    changed, other than a package's: a credentials file a RUN step wrote is read on the first login, not
    during the run. Programs
    there (/etc/init.d, /etc/cron.daily scripts) are no configuration: a container runs them only when the
    trace, the entrypoint's scripts or the app's code says so, and keeping them would keep their shell."""
    if ctx.layer_steps is None or not ctx.once("own-configuration"):
        return
    kinds = [step_kind(step) for step in ctx.layer_steps]
    # A package's own configuration (its conffiles) comes with the package when its programs are used: kept
    # for the image's sake alone, /etc/wgetrc would make scanners report a wget that is not there.
    packaged = dpkg_owned_paths(ctx.rootfs, ETC)
    for entry in walk(ctx.rootfs, ETC):
        own = 0 < entry.layer < len(kinds) and kinds[entry.layer] is not StepKind.BASE and entry.path not in packaged
        if own and (_is_configuration(entry) or entry.kind is EntryKind.SYMLINK and _stays_in_etc(ctx, entry.path)):
            source = f"layer {entry.layer} ({_short(ctx.layer_steps[entry.layer])})"
            yield entry.path, Reason(ReasonKind.OWN_CONFIGURATION, source=source)


def _is_configuration(entry: FileEntry | None) -> bool:
    return entry is not None and entry.kind is EntryKind.FILE and not entry.mode & 0o111


def _stays_in_etc(ctx: RuleContext, link: PurePosixPath) -> bool:
    """A symlink to configuration, not a program chooser (/etc/alternatives/vi -> /usr/bin/vim.tiny) nor a
    runlevel link to an init script (/etc/rc2.d/S01nginx -> ../init.d/nginx)."""
    target = ctx.rootfs.resolve(link)
    return target.exists and ETC in target.path.parents and _is_configuration(ctx.rootfs.get(target.path))


def _short(step: str, limit: int = 60) -> str:
    text = re.sub(r"^/bin/sh -c (#\(nop\)\s*)?|\s*# buildkit$", "", step.strip())
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------- declared dependencies


GEM_HOMES = tuple(P(p) for p in ("/usr/local/bundle", "/usr/local/lib/ruby/gems", "/usr/lib/ruby/gems", "/var/lib/gems",
                                 "/usr/share/rubygems-integration/all"))


def keep_declared_dependencies(ctx: RuleContext) -> Iterator[Keep]:
    """The packages kept manifests declare, whole and transitively: a kept package.json's dependencies
    (resolved through node_modules as Node does) and workspaces, package-lock.json's installed packages, a
    kept Python distribution's requirements and the app's requirements*.txt / pyproject.toml, the gems of a
    Gemfile.lock. Never development dependencies or extras."""
    done = ctx.memo.setdefault("manifests", set())
    for path in list(ctx.kept):
        if path in done or not ctx.is_file(path):
            continue
        done.add(path)
        reader = _MANIFESTS.get(path.name) or (_requirements if _REQUIREMENTS.fullmatch(path.name) else None)
        if reader is not None:
            yield from reader(ctx, path)


_REQUIREMENTS = re.compile(r"requirements[\w.-]*\.txt")


def _package_json(ctx: RuleContext, manifest: PurePosixPath) -> Iterator[Keep]:
    required, optional, workspaces = node_manifest(ctx.rootfs.read(manifest))
    for name in required + optional:
        package = node_resolve(ctx, manifest.parent, name)
        if package is None:
            if name in required:
                ctx.notes[f"{name} (a dependency in {manifest}) is not installed in the image"] = None
            continue
        reason = Reason(ReasonKind.DECLARED, source=str(manifest), detail=name)
        yield from ((member, reason) for member in package_files(ctx, package))
    for pattern in workspaces:
        for workspace in _simple_glob(ctx, manifest.parent, pattern):
            if ctx.is_file(workspace / "package.json"):
                yield workspace / "package.json", Reason(ReasonKind.DECLARED, source=str(manifest), detail=pattern)


def _simple_glob(ctx: RuleContext, base: PurePosixPath, pattern: str) -> list[PurePosixPath]:
    """A workspace pattern: a directory, or `dir/*` (every directory in it)."""
    if pattern.endswith("/*"):
        return [c for c in ctx.rootfs.children(base / pattern[:-2]) if ctx.is_dir(c)]
    return [base / pattern] if ctx.is_dir(base / pattern) else []


def _package_lock(ctx: RuleContext, lock: PurePosixPath) -> Iterator[Keep]:
    reason = Reason(ReasonKind.DECLARED, source=str(lock), detail="installed")
    for installed in lock_installed(ctx.rootfs.read(lock)):
        if ctx.is_dir(lock.parent / installed):
            yield from ((m, reason) for m in package_files(ctx, lock.parent / installed))


def _python_metadata(ctx: RuleContext, metadata: PurePosixPath) -> Iterator[Keep]:
    if not metadata.parent.name.endswith((".dist-info", ".egg-info")):
        return
    environment = python_environment(_python_version(ctx))
    text = ctx.rootfs.read(metadata)
    names = requires_txt(text, environment) if metadata.name == "requires.txt" else requires_dist(text, environment)
    yield from _distributions(ctx, metadata, names)


def _requirements(ctx: RuleContext, manifest: PurePosixPath) -> Iterator[Keep]:
    if not any(r.kind is ReasonKind.APP_FILE for r in ctx.kept.get(manifest, ())):
        return  # the application's own requirements, not a file some package ships
    environment = python_environment(_python_version(ctx))
    text = ctx.rootfs.read(manifest)
    names = pyproject_dependencies(text, environment) if manifest.suffix == ".toml" else requirement_lines(text, environment)
    yield from _distributions(ctx, manifest, names)


def _distributions(ctx: RuleContext, manifest: PurePosixPath, names: list[str]) -> Iterator[Keep]:
    index = _installed_distributions(ctx)
    for name in names:
        package = index.get(name)
        if package is None:
            continue  # a requirement another Python's site directory, or nothing, provides
        reason = Reason(ReasonKind.DECLARED, source=str(manifest), detail=name)
        yield from ((member, reason) for member in package.members)


def _installed_distributions(ctx: RuleContext) -> dict[str, Package]:
    """Every distribution of the image's site directories by canonical name."""
    return ctx.made_once("distributions", lambda: _distribution_index(ctx))


def _distribution_index(ctx: RuleContext) -> dict[str, Package]:
    index: dict[str, Package] = {}
    sites = [d for d in python_search_path(ctx) if d.name in ("site-packages", "dist-packages")]
    for site in sites:
        by_file, by_name = python_distributions(ctx, site)
        for package in {*by_file.values(), *by_name.values()}:
            stem = package.root.name.rsplit(".", 1)[0].split("-")[0]
            index.setdefault(canonicalize_name(stem), package)
    return index


def _python_version(ctx: RuleContext) -> str:
    versions = _python_versions(ctx)
    return versions[-1] if versions else "3"


def _gemfile_lock(ctx: RuleContext, lock: PurePosixPath) -> Iterator[Keep]:
    homes = [P(h) for h in (ctx.facts.env.get("GEM_HOME"), ctx.facts.env.get("BUNDLE_PATH")) if h] + list(GEM_HOMES)
    for name, version in gemfile_lock_gems(ctx.rootfs.read(lock)):
        for home in homes:
            gems = [g / "gems" for g in [home, *ctx.rootfs.children(home)] if ctx.is_dir(g / "gems")]
            found = next((g / f"{name}-{version}" for g in gems if ctx.is_dir(g / f"{name}-{version}")), None)
            package = ruby_package(ctx, found / "lib") if found is not None else None
            if package is not None:
                reason = Reason(ReasonKind.DECLARED, source=str(lock), detail=f"{name} {version}")
                yield from ((member, reason) for member in package.members)
                break


_MANIFESTS = {"package.json": _package_json, "package-lock.json": _package_lock, "METADATA": _python_metadata,
              "PKG-INFO": _python_metadata, "requires.txt": _python_metadata, "pyproject.toml": _requirements,
              "Gemfile.lock": _gemfile_lock}
