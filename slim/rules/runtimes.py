"""Rule runtimes: an interpreter's standard library and native helpers (Python, Ruby, JDK, node)."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import EntryKind, FileEntry, Reason, ReasonKind
from slim.image.rootfs import RootFS
from .base import P, Keep, RuleContext, chunks, walk
from .packages import NODE_GLOBAL_DIRS, PACKAGE_SKIP_DIRS, package_files

_PYTHON = re.compile(r"python(\d+\.\d+)|libpython(\d+\.\d+)\w*\.so[.\d]*")
_RUBY = re.compile(r"ruby(\d+\.\d+)?|libruby(?:-|\.so\.)(\d+\.\d+)[.\w]*")
_NODE = re.compile(r"node|nodejs|libnode\.so[.\d]*")
_JVM = re.compile(r"libjvm\.so")
# What of Python's standard library no import graph sees (slim/rules/reach.py follows the imports): the landmark
# the interpreter finds its prefix by, site and sitecustomize (imported by the interpreter at start), the
# codec registry (the codecs it imports by name are followed by slim/rules/reach.py), sysconfig's data (its module
# name is computed), lib-dynload itself.
PYTHON_UNSEEN = ("os.py", "site.py", "sitecustomize.py", "encodings/__init__.py", "encodings/aliases.py", "lib-dynload")
_SYSCONFIGDATA = re.compile(r"_sysconfigdata_.*\.py")
JDK_SKIP_FILES = frozenset({"src.zip", "ct.sym"})  # sources and javac's symbol file: never read at run time
_NODE_PACKAGE_PATH = re.compile(rb"/usr/(?:share|lib)/nodejs/((?:@[\w.-]+/)?[\w.-]+)")


def keep_runtimes(ctx: RuleContext) -> Iterator[Keep]:
    """When an interpreter or VM is kept, what of its standard library and native helpers no import graph
    sees, because error paths and rarely used features load lazily: Python's codecs, site, sysconfig's
    data and the prefix landmark (slim/rules/reach.py follows the rest of its imports); Ruby's native encodings
    (slim/rules/ruby_requires.py follows its requires); a JDK's lib/ (module image and native libraries) and conf/; the node packages Debian's
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
    """The native encodings and transcoders in <prefix>/lib[/<arch>]/ruby/X.Y.0/enc, which the VM loads by
    an encoding's name (a string's, a file's); slim/rules/ruby_requires.py follows the requires."""
    reason = Reason(ReasonKind.RUNTIME, source=str(program), detail="Ruby's encodings, loaded by name")
    wanted = re.compile(re.escape(version) + r"\.\d+" if version else r"\d+\.\d+\.\d+")
    for prefix in dict.fromkeys([program.parent.parent, P("/usr"), P("/usr/local")]):
        lib = prefix / "lib"
        homes = [lib / "ruby"] + [c / "ruby" for c in ctx.rootfs.children(lib) if ctx.is_dir(c / "ruby")]
        for home in homes:
            for stdlib in ctx.rootfs.children(home):
                if wanted.fullmatch(stdlib.name) and ctx.is_dir(stdlib / "enc") and ctx.once(("ruby", stdlib)):
                    for entry in walk(ctx.rootfs, stdlib / "enc", _skip_developer_dirs):
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
                for member in package_files(ctx, top / name):
                    yield member, reason


def _embedded_node_packages(rootfs: RootFS, path: PurePosixPath) -> set[str]:
    return {os.fsdecode(m[1]) for chunk in chunks(rootfs, path) for m in _NODE_PACKAGE_PATH.finditer(chunk)}
