"""Node's module graph, as a keep rule: the packages (kept whole) and the app's own files that kept
JavaScript can load by name, though no manifest declares them (the static scanner is
slim/static_analysis/jsrequires.py)."""
from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import Reason, ReasonKind
from slim.static_analysis.jsrequires import is_builtin, package_name, scan_js
from .base import P, Keep, RuleContext
from .packages import NODE_GLOBAL_DIRS, package_files

NODE_GLOBAL_MODULES = NODE_GLOBAL_DIRS + (P("/usr/local/lib/node_modules"),)  # and npm install -g
JS_SUFFIXES = (".js", ".mjs", ".cjs")
# How Node completes a path it is given (require("./lib/db") -> ./lib/db.js, or ./lib/db/index.js).
_FILE_ENDINGS = ("", ".js", ".json", ".node", ".mjs", ".cjs")
_INDEX_FILES = ("index.js", "index.json", "index.node")


# Kept JavaScript that runs: what the run loaded, the app's own files, the entrypoint. A file kept only
# because its package is kept whole (a test, a browser bundle in dist/) starts no edge of the graph.
ROOT_REASONS = frozenset({ReasonKind.TRACED, ReasonKind.APP_FILE, ReasonKind.ENTRYPOINT, ReasonKind.INCLUDE})


def keep_node_requires(ctx: RuleContext) -> Iterator[Keep]:
    """Every package (whole) and file that JavaScript the app runs can require or import by a literal name,
    following each package into its entry file and the files it names in turn."""
    visited = ctx.memo.setdefault("node-visited", set())
    pending = [e.path for e in ctx.kept_files_new_to("node-requires") if e.path.suffix in JS_SUFFIXES
               and any(reason.kind in ROOT_REASONS for reason in ctx.kept.get(e.path, ()))]
    while pending:
        source = pending.pop()
        if source in visited:
            continue
        visited.add(source)
        for path, reason, follow in _file_requires(ctx, source):
            yield path, reason
            if follow and path.suffix in JS_SUFFIXES:
                pending.append(path)


def _file_requires(ctx: RuleContext, source: PurePosixPath) -> Iterator[tuple[PurePosixPath, Reason, bool]]:
    """(path, reason, whether the graph goes on from it) for each file a require of `source` keeps."""
    found = scan_js(ctx.rootfs.read(source))
    for specifier, line in found.specifiers:
        if is_builtin(specifier):
            continue
        reason = Reason(ReasonKind.IMPORT, source=str(source), detail=str(line))
        name = package_name(specifier)
        if name is None:
            yield from ((path, reason, True) for path in _module_files(ctx, source.parent / specifier))
            continue
        package = node_resolve(ctx, source.parent, name)
        if package is None:
            continue
        if ctx.once(("node-package", package)):
            yield from ((member, reason, False) for member in package_files(ctx, package))
        inside = package / specifier[len(name):].lstrip("/")
        yield from ((path, reason, True) for path in _module_files(ctx, inside))
    if found.dynamic_lines and not any(p.name == "node_modules" for p in source.parents):
        for line in found.dynamic_lines:
            ctx.notes[f"{source}:{line} requires a module whose name is computed: keep it with --include-path"] = None


def node_resolve(ctx: RuleContext, base: PurePosixPath, name: str) -> PurePosixPath | None:
    """require(name) from a file in `base`: node_modules in it and every directory above, NODE_PATH, then
    the global folders."""
    nested = [d / "node_modules" / name for d in (base, *base.parents) if d.name != "node_modules"]
    node_path = [P(d) / name for d in ctx.facts.env.get("NODE_PATH", "").split(":") if d.startswith("/")]
    return next((c for c in nested + node_path + [g / name for g in NODE_GLOBAL_MODULES] if ctx.is_dir(c)), None)


def _module_files(ctx: RuleContext, target: PurePosixPath) -> list[PurePosixPath]:
    """The file a relative require loads: the path as given or completed, or a directory's main or index."""
    target = PurePosixPath(posixpath.normpath(target))
    for ending in _FILE_ENDINGS:
        candidate = target.with_name(target.name + ending)
        if ctx.is_file(candidate):
            return [candidate]
    if ctx.is_dir(target):
        manifest = target / "package.json"
        main = _main_of(ctx, manifest) if ctx.is_file(manifest) else None
        if main is not None:
            return [manifest, *_module_files(ctx, target / main)]
        return [target / name for name in _INDEX_FILES if ctx.is_file(target / name)][:1]
    return []


def _main_of(ctx: RuleContext, manifest: PurePosixPath) -> str | None:
    try:
        main = json.loads(ctx.rootfs.read(manifest)).get("main")
    except (ValueError, AttributeError):
        return None
    return main if isinstance(main, str) and main else None
