"""Rules that keep what deployed code can reach although the traced run did not go there (issue 10).

Each reads the code and manifests the closure keeps, never runs them: the modules kept Python modules can
import (slim/pyimports.py), the packages an app declares (slim/manifests.py), the commands its entrypoint
scripts can run (slim/shellscripts.py), the programs its code starts by name (slim/programs.py), and the
configuration the image's own build wrote under /etc. What cannot be resolved statically (a name held in a
variable) is said in the build's warnings.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from .model import EntryKind, Reason, ReasonKind
from .pyimports import ModuleFinder, codec_aliases, codec_module, imported_files, scan_imports
from .rules import (
    PACKAGE_SKIP_DIRS,
    TIMEZONE_DIRS,
    TIMEZONE_SKIP,
    Keep,
    RuleContext,
    StepKind,
    step_kind,
    walk,
)

P = PurePosixPath
_PYTHON_PROGRAM = re.compile(r"python(\d+\.\d+)|libpython(\d+\.\d+)\w*\.so[.\d]*")
# NUL-terminated names inside an interpreter or extension module: what its C code may import by name.
_C_STRING = re.compile(rb"(?<=\x00)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\x00")
C_SCAN_LIMIT = 64 << 20
# The interpreter names every standard module (sys.stdlib_module_names), so its own C-level imports are
# listed instead: time.strptime's and datetime's _strptime, pickling's copyreg, tracebacks' linecache.
INTERPRETER_IMPORTS = ("_strptime", "copyreg", "linecache", "traceback", "warnings", "_sitebuiltins", "_weakrefset")
# Parts of the standard library an application does not run: its test suite, GUI and teaching tools, the
# package installer's bootstrap and pydoc's help topics (as before the import graph, they stay out).
# Codecs the interpreter and the standard library look up by name all the time (files, sockets' idna).
BASIC_CODECS = ("utf_8", "utf_8_sig", "ascii", "latin_1", "idna", "punycode", "raw_unicode_escape", "unicode_escape",
                "utf_16", "utf_32", "charmap")
LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LANG")
STDLIB_HIDDEN = ("test", "idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "pydoc_data", "lib2to3")


# ---------------------------------------------------------------- Python's import graph


def python_search_path(ctx: RuleContext) -> tuple[PurePosixPath, ...]:
    """sys.path of the kept Python interpreters, as far as the image decides it: the script's directory,
    PYTHONPATH, the standard library with lib-dynload, then the site directories (Debian's and pip's)."""
    versions = sorted({m[1] or m[2] for e in ctx.kept_files() if (m := _PYTHON_PROGRAM.fullmatch(e.path.name))
                       and (e.mode & 0o111 or m[2])})
    if not versions:
        return ()
    head = []
    if ctx.entrypoint_script is not None:
        head.append(ctx.entrypoint_script.parent)
    head += [P(d) for d in ctx.facts.env.get("PYTHONPATH", "").split(":") if d.startswith("/")]
    tail = []
    for version in versions:
        for prefix in (P("/usr/local"), P("/usr"), P("/opt/python")):
            stdlib = prefix / "lib" / f"python{version}"
            tail += [stdlib, stdlib / "lib-dynload", stdlib / "site-packages", stdlib / "dist-packages"]
        tail.append(P("/usr/lib/python3/dist-packages"))
    return tuple(d for d in dict.fromkeys(head + tail) if ctx.is_dir(d))


def keep_python_imports(ctx: RuleContext) -> Iterator[Keep]:
    """Every module a kept Python module can import, at any depth, resolved over the image's sys.path;
    for an import call with a computed name, the caller's whole package; for interpreters and extension
    modules, the modules their C code names; the timezone database once zoneinfo can be imported."""
    search_path = ctx.memo.get("python-path") or ctx.memo.setdefault("python-path", python_search_path(ctx))
    if not search_path:
        return
    stdlib = [d for d in search_path if d.name.startswith("python") and d.parent.name == "lib"]
    finder = ModuleFinder(ctx.rootfs, search_path, frozenset(d / name for d in stdlib for name in STDLIB_HIDDEN))
    scanned = ctx.memo.setdefault("python-scanned", set())
    for entry in ctx.kept_files():
        if entry.path in scanned:
            continue
        scanned.add(entry.path)
        if entry.path.suffix == ".py" or _is_python_script(ctx, entry.path):
            yield from _module_imports(ctx, finder, entry.path)
        elif _PYTHON_PROGRAM.fullmatch(entry.path.name):
            reason = Reason(ReasonKind.IMPORT, source=str(entry.path), detail="imported by the interpreter")
            for name in INTERPRETER_IMPORTS:
                yield from ((path, reason) for path in finder.find(name) or ())
        elif entry.path.suffix == ".so" and any(d in entry.path.parents for d in search_path):
            yield from _c_level_imports(ctx, finder, entry.path)
        if entry.path.parent.name == "zoneinfo" and entry.path.name == "__init__.py":
            yield from _timezone_database(ctx, entry.path)


def _is_python_script(ctx: RuleContext, path: PurePosixPath) -> bool:
    head = ctx.rootfs.read(path, limit=128)
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def _module_imports(ctx: RuleContext, finder: ModuleFinder, module: PurePosixPath) -> Iterator[Keep]:
    found = scan_imports(ctx.rootfs.read(module), main=module == ctx.entrypoint_script)
    if found is None:
        return
    for wanted in found.names:
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
        aliases = ctx.memo.get(("codec-aliases", encodings))
        if aliases is None:
            source = ctx.rootfs.read(encodings / "aliases.py") if ctx.is_file(encodings / "aliases.py") else b""
            aliases = ctx.memo.setdefault(("codec-aliases", encodings), codec_aliases(source) if source else {})
        if aliases and (module := finder.module_file(encodings, codec_module(aliases, name))) is not None:
            found.append(module)
    return found


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
    are modules of the standard library."""
    stdlib = _stdlib_dirs(finder)
    data = ctx.rootfs.read(program, limit=C_SCAN_LIMIT)
    reason = Reason(ReasonKind.IMPORT, source=str(program), detail="named in its C code")
    for name in dict.fromkeys(m[1].decode() for m in _C_STRING.finditer(data)):
        for directory in stdlib:
            for path in finder.find_below(directory, name.split(".")) or _codec(ctx, finder, name):
                yield path, reason


def _timezone_database(ctx: RuleContext, zoneinfo: PurePosixPath) -> Iterator[Keep]:
    reason = Reason(ReasonKind.TIMEZONE, source=str(zoneinfo), detail="zoneinfo can be imported")
    for database in TIMEZONE_DIRS:
        if ctx.is_dir(database) and ctx.once(("timezone", database)):
            for entry in walk(ctx.rootfs, database, lambda rel, e: rel[0] in TIMEZONE_SKIP):
                yield entry.path, reason
