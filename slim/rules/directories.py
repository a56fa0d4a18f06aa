"""Rules empty-dirs and data-trees: directories that matter as a whole or as empty."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import ROOT, EntryKind, Reason, ReasonKind
from slim.image.rootfs import RootFS
from .base import Keep, RuleContext, walk
from .app_files import VCS_AND_CACHES

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
