"""Ruby's require graph, as a keep rule: what kept Ruby code can `require`, instead of the whole standard
library (the static scanner is slim/static_analysis/rbrequires.py)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import Reason, ReasonKind, under_any
from slim.static_analysis.rbrequires import library_of, resolve_require, ruby_load_path, scan_requires, Require
from .base import Keep, RuleContext, walk
from .packages import PACKAGE_SKIP_DIRS

RUBY_PROGRAM = re.compile(r"ruby(\d+\.\d+)|libruby(?:-|\.so\.)(\d+\.\d+)[.\w]*")
# NUL-terminated feature names inside the VM or a native extension: what its C code (and the prelude
# compiled into libruby: Kernel#pp requires "pp") may require by name.
_C_STRING = re.compile(rb"(?<=\x00)([a-z_][a-z0-9_]*(?:/[a-z_][a-z0-9_]*)*)\x00")
C_SCAN_LIMIT = 64 << 20


def keep_ruby_requires(ctx: RuleContext) -> Iterator[Keep]:
    """Every file a kept Ruby file can require, at any depth, resolved over the image's load path; for a
    require with a computed name, the caller's whole library; for the VM and native extensions, the
    features their C code names."""
    load_path = ctx.found_once("ruby-path", lambda: _load_path(ctx))
    if not load_path:
        return
    for entry in ctx.kept_files_new_to("ruby-requires"):
        if entry.path.suffix == ".rb" or _is_ruby_script(ctx, entry.path):
            yield from _file_requires(ctx, load_path, entry.path)
        elif RUBY_PROGRAM.fullmatch(entry.path.name) or (
                entry.path.suffix == ".so" and under_any(entry.path, load_path)):
            yield from _c_level_requires(ctx, load_path, entry.path)


def _load_path(ctx: RuleContext) -> tuple[PurePosixPath, ...]:
    """The load path of the Ruby VMs kept so far."""
    versions = sorted({m[1] or m[2] for e in ctx.kept_files() if (m := RUBY_PROGRAM.fullmatch(e.path.name))})
    return tuple(d for v in versions for d in ruby_load_path(ctx.rootfs, v, dict(ctx.facts.env)))


def _is_ruby_script(ctx: RuleContext, path: PurePosixPath) -> bool:
    head = ctx.rootfs.read(path, limit=128)
    return head.startswith(b"#!") and b"ruby" in head.split(b"\n", 1)[0]


def _file_requires(ctx: RuleContext, load_path: tuple[PurePosixPath, ...], source: PurePosixPath) -> Iterator[Keep]:
    found = scan_requires(ctx.rootfs.read(source))
    for wanted in found.requires:
        for path in resolve_require(ctx.rootfs, load_path, source, wanted):
            yield path, Reason(ReasonKind.IMPORT, source=str(source), detail=str(wanted.line))
    for line in found.dynamic_lines:
        library = library_of(load_path, source)
        if library is None:
            ctx.notes[f"{source}:{line} requires a file whose name is computed: keep it with --include-path"] = None
            continue
        reason = Reason(ReasonKind.IMPORT, source=str(source), detail=str(line))
        for rb in (library, library.with_name(f"{library.name}.rb"), library.with_name(f"{library.name}.so")):
            for entry in walk(ctx.rootfs, rb, lambda rel, e: rel[-1] in PACKAGE_SKIP_DIRS):
                yield entry.path, reason


def _c_level_requires(ctx: RuleContext, load_path: tuple[PurePosixPath, ...], binary: PurePosixPath) -> Iterator[Keep]:
    data = ctx.rootfs.read(binary, limit=C_SCAN_LIMIT)
    reason = Reason(ReasonKind.IMPORT, source=str(binary), detail="named in its C code")
    for name in dict.fromkeys(m[1].decode() for m in _C_STRING.finditer(data)):
        for path in resolve_require(ctx.rootfs, load_path, binary, Require(name, 0, relative=False)):
            yield path, reason
