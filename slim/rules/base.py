"""What every keep rule sees and returns (RuleContext, Rule, Keep), and the tree walks they share."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

from slim.model import EntryKind, FileEntry, ImageFacts, Reason, ReasonKind
from slim.image.rootfs import RootFS

P = PurePosixPath
Keep = tuple[PurePosixPath, Reason]

SCAN_CHUNK = 1 << 20
T = TypeVar("T")



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

    def kept_files_new_to(self, reader: str) -> list[FileEntry]:
        """The kept files `reader` (a rule's scanner) has not been given in an earlier round."""
        seen = self.memo.setdefault(("read-by", reader), set())
        fresh = [entry for entry in self.kept_files() if entry.path not in seen]
        seen.update(entry.path for entry in fresh)
        return fresh

    def found_once(self, key: object, find: Callable[[], tuple]) -> tuple:
        """`find()`, memoised once it finds something: until then every round looks again, as a later round
        may keep the interpreter the search depends on."""
        if found := self.memo.get(key):
            return found
        if found := find():
            self.memo[key] = found
        return found

    def made_once(self, key: object, make: Callable[[], T]) -> T:
        """`make()`, made the first time `key` is asked for and shared by every later round."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

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



def chunks(rootfs: RootFS, path: PurePosixPath) -> Iterator[bytes]:
    """The file's bytes in overlapping chunks, for searching short patterns."""
    overlap = b""
    with rootfs.open(path) as data:
        while chunk := data.read(SCAN_CHUNK):
            yield overlap + chunk
            overlap = chunk[-256:]
