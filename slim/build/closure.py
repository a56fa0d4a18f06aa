"""Trace + rootfs index -> Closure: what the run touched plus what it provably needs, each with reasons.

Seeds (traced paths, the entrypoint, always-kept and included paths, volume seed data) are followed to a
fixpoint through #! interpreters and the dynamic loader's rules; the rules of slim/rules/ (application
files, packages, runtimes, data sets, ...) add what the run will plausibly need, and what they add is
followed in turn, until neither adds a path. Then hard links, the symlinks leading to kept paths and the
directories above them are added, and excluded paths are taken out last.
Everything is resolved inside the image root; the only I/O is reading the rootfs index.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.image.elf import ELF_MAGIC, ElfInfo, MalformedElf, read_elf
from slim.model import (
    CONFIG_READ_LIMIT,
    ROOT,
    Closure,
    EntryKind,
    FileEntry,
    ImageFacts,
    PackageSummary,
    Reason,
    ReasonKind,
    Lookup,
    Seen,
    Sightings,
    TracedPath,
    under_any,
)
from slim.image.package_db import database_manager, trim_databases
from slim.image.rootfs import Resolved, RootFS
from slim.rules.base import RuleContext
from slim.rules.app_files import APP_FILES_MODES
from slim.rules.table import RULES

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's default
LD_SO_CONF = PurePosixPath("/etc/ld.so.conf")
UNTRACEABLE_KINDS = (EntryKind.FIFO, EntryKind.CHAR, EntryKind.BLOCK)
# A library every ELF needs (libc) would otherwise collect one reason per ELF in the image.
MAX_REASONS = 8
SHEBANG_LIMIT = 256  # BINPRM_BUF_SIZE: the kernel reads no more of a #! line
# env(1) options that take the next word as their argument, so it is not the command.
ENV_OPTIONS_WITH_ARGUMENT = frozenset({"-u", "--unset", "-C", "--chdir"})
PLATFORMS = {"EM_X86_64": "x86_64", "EM_386": "i686", "EM_AARCH64": "aarch64", "EM_ARM": "armv7l"}
MULTIARCH = {
    ("EM_X86_64", 64): "x86_64-linux-gnu",
    ("EM_X86_64", 32): "x86_64-linux-gnux32",
    ("EM_386", 32): "i386-linux-gnu",
    ("EM_AARCH64", 64): "aarch64-linux-gnu",
    ("EM_ARM", 32): "arm-linux-gnueabihf",
    ("EM_PPC64", 64): "powerpc64le-linux-gnu",
    ("EM_S390", 64): "s390x-linux-gnu",
    ("EM_RISCV", 64): "riscv64-linux-gnu",
}
DST = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


# runc reads the user and group databases before the entrypoint starts (so before any trace); the loader's
# configuration is what tells the library search (ours, ldconfig's) where the libraries are.
ALWAYS_KEEP = tuple(
    PurePosixPath(p) for p in ("/etc/passwd", "/etc/group", "/etc/ld.so.conf", "/etc/ld.so.conf.d")
)


# Where programs keep run-time state (FHS); their directory skeleton is kept, see _keep_state_directories.
STATE_TOPS = tuple(PurePosixPath(p) for p in ("/var", "/run", "/tmp"))
# ... except the package managers' own databases, which a slimmed image has no use for.
PACKAGE_MANAGER_STATE = tuple(
    PurePosixPath(p)
    for p in ("/var/lib/dpkg", "/var/lib/apt", "/var/cache/apt", "/var/cache/debconf", "/var/lib/apk", "/var/cache/apk")
)


# Files kept as parts of a library by a rule: an executable among them (pdb.py) still gets its #! interpreter,
# so the image holds no broken program, but one the original cannot run either is no news worth a warning.
LIBRARY_REASONS = frozenset({ReasonKind.RUNTIME, ReasonKind.PACKAGE, ReasonKind.IMPORT, ReasonKind.DECLARED})


@dataclass(frozen=True)
class ClosureOptions:
    include_paths: tuple[PurePosixPath, ...] = ()
    exclude_paths: tuple[PurePosixPath, ...] = ()
    always_keep: tuple[PurePosixPath, ...] = ALWAYS_KEEP
    disabled_rules: frozenset[str] = frozenset()  # names of slim/rules/table.py RULES not to apply (--no-rule)
    app_files: str = "all"  # none | touched | all (--app-files)
    # The Dockerfile step behind each layer, bottom first (from the image history); None when unknown.
    layer_steps: tuple[str, ...] | None = None
    package_db: bool = True  # keep the package databases trimmed to the kept packages, and their licenses

    def __post_init__(self) -> None:
        unknown = self.disabled_rules - {rule.name for rule in RULES}
        if unknown or self.app_files not in APP_FILES_MODES:
            raise ValueError(f"unknown rule {sorted(unknown)} or --app-files mode {self.app_files!r}")


def compute_closure(trace: Sightings, rootfs: RootFS, facts: ImageFacts, options: ClosureOptions) -> Closure:
    image = _Image.of(rootfs, facts)
    kept = _Kept(rootfs)
    counted = sightings_that_count(trace, rootfs)  # all the closure reads of the trace
    for traced in counted.paths:
        _keep_traced(kept, traced)
    for lookup in counted.lookups:
        _keep_looked_up(kept, lookup)
    _keep_entrypoint(kept, image, facts.command)
    _keep_seeds(kept, options, facts.volumes)  # before the state directories: a volume is named as one
    _keep_state_directories(kept)
    loader = _Loader(kept, image)
    context = _rule_context(counted, image, facts, options, kept, loader)
    rules = [rule for rule in RULES if rule.name not in options.disabled_rules]
    while True:  # until the rules add nothing that the loader, #! lines or companions would follow
        before = len(kept.reasons)
        _follow_dependencies(kept, image, loader)
        _keep_python_companions(kept)
        for rule in rules:
            for path, reason in rule.keep(context):
                _keep_for_rule(kept, path, reason)
        if len(kept.reasons) == before:
            break
    for note in context.notes:
        kept.warn(note)
    for path, name in loader.unresolved():
        # A runtime's own library finds what its process already loaded (the JDK's libnet.so needs libjvm.so).
        if kept.reasons[path][0].kind not in LIBRARY_REASONS:
            kept.warn(_missing_library(path, name))
    _keep_hard_links(kept)
    _keep_symlinks_and_parents(kept)
    if not options.package_db:
        return kept.closure(options.exclude_paths)
    packages, rewritten = _keep_package_databases(kept, options.exclude_paths)
    return dataclasses.replace(kept.closure(options.exclude_paths), rewritten=rewritten, packages=packages)


def _keep_package_databases(
    kept: _Kept, excluded: tuple[PurePosixPath, ...]
) -> tuple[PackageSummary, dict[PurePosixPath, bytes]]:
    """Last, because which packages the image holds depends on every other kept path: their copyright
    files, then their database entries with file lists naming exactly what is kept (copyrights included)."""
    rootfs = kept.rootfs
    before = len(kept.reasons)
    trimmed = trim_databases(rootfs, {path for path in kept.reasons if not under_any(path, excluded)})
    for path, package in trimmed.licenses.items():
        kept.add_resolved(rootfs.resolve(path), Reason(ReasonKind.LICENSE, source=package))
    for path in trimmed.support:
        kept.add(path, Reason(ReasonKind.PACKAGE_DB, source=database_manager(path)))
    for path in list(kept.reasons)[before:]:
        _keep_parents(kept, path)
    final = {path for path in kept.reasons if not under_any(path, excluded)}
    rewritten = trimmed.rewritten | trimmed.file_lists(rootfs, final)
    for path in rewritten:
        kept.add(path, Reason(ReasonKind.PACKAGE_DB, source=database_manager(path)))
        _keep_parents(kept, path)
    return trimmed.summary, rewritten


def kept_entry(rootfs: RootFS, closure: Closure, path: PurePosixPath) -> FileEntry | None:
    """What the slimmed image has at a kept path: the original's entry, with the size of its rewritten
    bytes for a trimmed database, or a new root-owned file for a database file the original lacks."""
    entry = rootfs.get(path)
    data = closure.rewritten.get(path)
    if data is None:
        return entry
    if entry is None:
        return FileEntry(path, EntryKind.FILE, 0o644, 0, 0, 0, size=len(data))
    return dataclasses.replace(entry, size=len(data), hardlink_group=())


# ---------------------------------------------------------------- the closure being built


@dataclass(frozen=True)
class _Image:
    """The parts of the image's runtime environment that decide how names resolve."""

    rootfs: RootFS
    path: tuple[PurePosixPath, ...]  # PATH, for execvp-style lookups
    library_path: tuple[str, ...]  # LD_LIBRARY_PATH entries, unexpanded
    cwd: PurePosixPath  # WorkingDir: what relative names are relative to

    @classmethod
    def of(cls, rootfs: RootFS, facts: ImageFacts) -> _Image:
        env = facts.env
        path = tuple(PurePosixPath(d) for d in env.get("PATH", DEFAULT_PATH).split(":") if d)
        # ld.so accepts both separators in LD_LIBRARY_PATH.
        library_path = tuple(d for d in re.split("[:;]", env.get("LD_LIBRARY_PATH", "")) if d)
        return cls(rootfs, path, library_path, facts.working_dir)

    def resolve(self, name: str) -> Resolved:
        return self.rootfs.resolve(PurePosixPath(name), cwd=self.cwd)

    def which(self, name: str) -> Resolved | None:
        """execvp(3): a name with "/" is a path, anything else the first executable file on PATH."""
        if "/" in name:
            candidates: Iterable[Resolved] = [self.resolve(name)]
        else:
            candidates = (self.rootfs.resolve(d / name) for d in self.path)
        return next((r for r in candidates if _is_executable(_entry(self.rootfs, r))), None)


def _entry(rootfs: RootFS, resolved: Resolved) -> FileEntry | None:
    """The entry a resolution ended at, if it ended at one."""
    return rootfs.get(resolved.path) if resolved.exists else None


def _is_executable(entry: FileEntry | None) -> bool:
    return entry is not None and entry.kind is EntryKind.FILE and bool(entry.mode & 0o111)


class _Kept:
    """Reasons per kept path (first = main), warnings, and kept files whose dependencies are unread."""

    def __init__(self, rootfs: RootFS):
        self.rootfs = rootfs
        self.reasons: dict[PurePosixPath, list[Reason]] = {}
        self.warnings: dict[str, None] = {}  # a dict: ordered and without repeats
        self.unread: deque[PurePosixPath] = deque()
        self.companions_checked = 0  # how many of `reasons` (in insertion order) had their Python companions kept

    def add(self, path: PurePosixPath, reason: Reason) -> None:
        reasons = self.reasons.get(path)
        if reasons is None:
            self.reasons[path] = [reason]
            entry = self.rootfs.get(path)
            if entry is not None and entry.kind is EntryKind.FILE:
                self.unread.append(path)
        elif len(reasons) < MAX_REASONS and reason not in reasons:
            reasons.append(reason)

    def add_links(self, resolved: Resolved) -> None:
        for link in resolved.symlinks:
            self.add(link, Reason(ReasonKind.SYMLINK, source=str(resolved.path)))

    def add_resolved(self, resolved: Resolved, reason: Reason) -> None:
        """Keep where a path led, and every symlink on the way there."""
        self.add_links(resolved)
        self.add(resolved.path, reason)

    def warn(self, message: str) -> None:
        self.warnings[message] = None

    def closure(self, excluded: tuple[PurePosixPath, ...]) -> Closure:
        kept = {
            path: tuple(self.reasons[path])
            for path in sorted(self.reasons)
            if not under_any(path, excluded)
        }
        return Closure(kept=kept, warnings=tuple(self.warnings))


# ---------------------------------------------------------------- seeds


def sightings_that_count(seen: Sightings, rootfs: RootFS) -> Seen:
    """What of `seen` compute_closure reads (it reads nothing else): the paths and lookups that lead to
    something in the image. The others (files the run created, a pid file, a cache; paths it checked for
    and the image lacks) change nothing, so two sightings that agree here have the same closure."""
    return Seen(
        tuple(traced for traced in seen.paths if rootfs.resolve(traced.path).exists),
        tuple(lookup for lookup in seen.lookups if rootfs.resolve(lookup.path, follow_last=lookup.follow).exists),
    )


def _keep_traced(kept: _Kept, traced: TracedPath) -> None:
    # Paths the run created (pid files, caches) are not in the image: kept files come from the image.
    resolved = kept.rootfs.resolve(traced.path)
    entry = _entry(kept.rootfs, resolved)
    if entry is not None and entry.kind in (EntryKind.FILE, EntryKind.DIR):
        accesses = "|".join(sorted(a.value for a in traced.accesses))
        detail = f"{accesses} during {traced.phase}"
        kept.add_resolved(resolved, Reason(ReasonKind.TRACED, source=traced.program, detail=detail))


def _keep_looked_up(kept: _Kept, lookup: Lookup) -> None:
    """A path the run checked for (`[ -f … ]`, access(), readlink) without opening it: the check fails
    without it. A symlink looked at itself keeps where it leads too, so nothing kept dangles. A path the
    image lacks is not kept (the report lists it)."""
    resolved = kept.rootfs.resolve(lookup.path, follow_last=lookup.follow)
    if resolved.exists:
        kept.add_links(resolved)
        _keep_for_rule(kept, resolved.path, Reason(ReasonKind.LOOKED_UP, lookup.program, f"during {lookup.phase}"))


def _keep_entrypoint(kept: _Kept, image: _Image, command: tuple[str, ...]) -> None:
    if not command:
        return
    found = image.which(command[0])
    if found is None:
        kept.warn(f"entrypoint {command[0]} not found in the image")
    else:
        kept.add_resolved(found, Reason(ReasonKind.ENTRYPOINT, source=command[0]))


def _keep_state_directories(kept: _Kept) -> None:
    """Directories (not their files) where programs create files at run time.

    Creating a file or directory (nginx's mkdir of /var/lib/nginx/body) is no open, so the tracer cannot
    see which parent it needed; a missing parent is a crash at start. Empty directories cost no bytes.
    """
    for entry in kept.rootfs.walk(ROOT):
        if entry.kind is not EntryKind.DIR:
            continue
        wanted = entry.uid != 0 or _is_state_path(entry.path)
        # The package managers' state stays out even where a non-root user owns it (apt's _apt).
        if wanted and not under_any(entry.path, PACKAGE_MANAGER_STATE):
            kept.add(entry.path, Reason(ReasonKind.STATE_DIR))


def _is_state_path(path: PurePosixPath) -> bool:
    return under_any(path, STATE_TOPS)


def _keep_seeds(kept: _Kept, options: ClosureOptions, volumes: tuple[PurePosixPath, ...]) -> None:
    for path in options.always_keep:
        _keep_tree(kept, path, Reason(ReasonKind.ALWAYS))
    for path in options.include_paths:
        if not _keep_tree(kept, path, Reason(ReasonKind.INCLUDE)):
            kept.warn(f"include path {path} not found in the image")
    # fanotify reports opens of regular files and directories only. FIFOs and device nodes cost no bytes:
    # every one the image ships is kept, as the image has it.
    for entry in kept.rootfs.entries.values():
        if entry.kind in UNTRACEABLE_KINDS:
            kept.add(entry.path, Reason(ReasonKind.ALWAYS, detail=f"{entry.kind.value}: opens of it cannot be traced"))
    # An open through a symlink loop fails (ELOOP) before any file is reached, so no trace sees it; the
    # links cost a few bytes, and without them the same open would fail differently (ENOENT).
    for link in sorted(_symlink_loops(kept.rootfs)):
        kept.add(link, Reason(ReasonKind.ALWAYS, detail="symlink loop: opens of it fail before reaching a file"))
    # Opens under a volume never reach the tracer (a volume is mounted there at run time), so
    # whatever the image ships there is the volume's seed data and is kept whole.
    for volume in volumes:
        _keep_tree(kept, volume, Reason(ReasonKind.VOLUME, source=str(volume)))


def _symlink_loops(rootfs: RootFS) -> set[PurePosixPath]:
    """Every symlink on the way of a loop (resolving it gives ELOOP)."""
    links: set[PurePosixPath] = set()
    for entry in rootfs.entries.values():
        if entry.kind is EntryKind.SYMLINK:
            resolved = rootfs.resolve(entry.path)
            if resolved.loop:
                links.update((entry.path, *resolved.symlinks))
    return links


def _keep_tree(kept: _Kept, path: PurePosixPath, reason: Reason) -> bool:
    """Keep a path (a directory with everything below it); False when the image has no such path."""
    resolved = kept.rootfs.resolve(path)
    entry = _entry(kept.rootfs, resolved)
    if entry is None:
        return False
    kept.add_resolved(resolved, reason)
    if entry.kind is EntryKind.DIR:
        for below in kept.rootfs.walk(resolved.path):
            kept.add(below.path, reason)
    return True


# ---------------------------------------------------------------- the rules (slim/rules/)


def _rule_context(
    trace: Sightings, image: _Image, facts: ImageFacts, options: ClosureOptions, kept: _Kept, loader: _Loader
) -> RuleContext:
    traced = (image.rootfs.resolve(t.path) for t in trace.paths)
    return RuleContext(
        rootfs=image.rootfs,
        facts=facts,
        traced=frozenset(r.path for r in traced if r.exists),
        kept=kept.reasons,
        library_dirs=tuple(dict.fromkeys(loader.conf_dirs + _default_dirs(64))),
        entrypoint_script=_entrypoint_script(image, facts.command),
        layer_steps=options.layer_steps,
        app_files=options.app_files,
    )


def _keep_for_rule(kept: _Kept, path: PurePosixPath, reason: Reason) -> None:
    """Keep what a rule named; a symlink also keeps where it leads, so nothing kept dangles."""
    entry = kept.rootfs.get(path)
    if entry is not None:
        kept.add(path, reason)
    if entry is None or entry.kind is EntryKind.SYMLINK:
        resolved = kept.rootfs.resolve(path)
        if resolved.exists:
            kept.add_resolved(resolved, reason)


# Programs that run a script or file named by a later argument (python3 /app/app.py).
_INTERPRETER = re.compile(r"(python|ruby|node|nodejs|perl|php|java|bash|sh|dash|ash|zsh|bun|deno)[\d.]*")


def _entrypoint_script(image: _Image, command: tuple[str, ...]) -> PurePosixPath | None:
    """The script the container's command runs: the command itself when it is a #! script, else the
    first file an interpreter is given (python3 /app/app.py). Its directory is the application's (see
    rules.keep_app_files); a compiled program names none (its directory is often /usr/lib/<package>/bin)."""
    if not command:
        return None
    found = image.which(command[0])
    if found is None:
        return None
    if image.rootfs.read(found.path, limit=2) == b"#!":
        return found.path
    if not _INTERPRETER.fullmatch(found.path.name):
        return None
    for argument in command[1:]:
        if argument.startswith("-"):
            continue
        target = image.resolve(argument)
        entry = _entry(image.rootfs, target)
        if entry is not None and entry.kind is EntryKind.FILE:
            return target.path
    return None


# ---------------------------------------------------------------- dependencies: #! and the loader


def _follow_dependencies(kept: _Kept, image: _Image, loader: _Loader) -> None:
    """Read every kept file once; interpreters and libraries kept on the way are read in turn."""
    while kept.unread:
        path = kept.unread.popleft()
        head = kept.rootfs.read(path, limit=SHEBANG_LIMIT)
        if head.startswith(b"#!"):
            # The kernel reads a #! line only when the file is executed: a library module's line is a comment.
            if _is_executable(kept.rootfs.get(path)):
                _keep_interpreter(kept, image, path, head, quiet=kept.reasons[path][0].kind in LIBRARY_REASONS)
        elif head.startswith(ELF_MAGIC):
            loader.load(_Object(found=path, real=path, chain=()))


def _keep_interpreter(kept: _Kept, image: _Image, script: PurePosixPath, head: bytes, quiet: bool = False) -> None:
    # The kernel splits "#!interpreter optional-argument"; env(1) then looks its command up on PATH.
    words = os.fsdecode(head[2:].split(b"\n", 1)[0]).split()
    if not words:
        return
    reason = Reason(ReasonKind.SHEBANG, source=str(script))
    interpreter = image.resolve(words[0])
    if _entry(image.rootfs, interpreter) is None:
        if not quiet:
            kept.warn(f"interpreter {words[0]} of {script} not found in the image")
        return
    kept.add_resolved(interpreter, reason)
    command = _env_command(words[1:]) if PurePosixPath(words[0]).name == "env" else None
    if command is None:
        return
    found = image.which(command)
    if found is None:
        if not quiet:
            kept.warn(f"{command} (run through {words[0]} by {script}) not found in the image")
    else:
        kept.add_resolved(found, reason)


def _env_command(args: list[str]) -> str | None:
    """The command `env [options] [NAME=value...] command` runs (with -S, the split string's first word)."""
    words = iter(args)
    for word in words:
        if word.startswith("-S") and len(word) > 2:
            return word[2:]
        if word in ENV_OPTIONS_WITH_ARGUMENT:
            next(words, None)
        elif not word.startswith("-") and "=" not in word:
            return word
    return None


@dataclass(frozen=True)
class _Object:
    """An ELF object as ld.so holds it."""

    found: PurePosixPath  # the path it was opened by: $ORIGIN is its directory
    real: PurePosixPath  # the file that path leads to
    # DT_RPATH directories of the objects that loaded this one, nearest first (ld.so's l_loader chain,
    # ending with the executable): they apply to this object's own dependencies.
    chain: tuple[PurePosixPath, ...]


@dataclass(frozen=True)
class _Found:
    path: PurePosixPath  # search directory + name
    resolved: Resolved


class _Loader:
    """ld.so's search for PT_INTERP and DT_NEEDED, inside the image, with its caches."""

    def __init__(self, kept: _Kept, image: _Image):
        self.kept = kept
        self.image = image
        self.conf_dirs = _ld_so_conf_dirs(image.rootfs, LD_SO_CONF, frozenset())
        self.infos: dict[PurePosixPath, ElfInfo | None] = {}
        self.lookups: dict[tuple[str, tuple[PurePosixPath, ...], int, str], _Found | None] = {}
        self.loaded: set[_Object] = set()
        # (needing file, name): a library reached through an executable's RPATH may miss a name when
        # read on its own, so a miss is only reported if no way of loading that file found the name.
        self.misses: dict[tuple[PurePosixPath, str], None] = {}
        self.hits: set[tuple[PurePosixPath, str]] = set()

    def load(self, root: _Object) -> None:
        pending = [root]
        while pending:
            obj = pending.pop()
            if obj not in self.loaded:
                self.loaded.add(obj)
                pending.extend(self._dependencies(obj))

    def unresolved(self) -> list[tuple[PurePosixPath, str]]:
        """(needing file, name) of every DT_NEEDED no way of loading that file resolved."""
        return [(path, name) for path, name in self.misses if (path, name) not in self.hits]

    def info(self, path: PurePosixPath) -> ElfInfo | None:
        if path not in self.infos:
            self.infos[path] = self._read(path)
        return self.infos[path]

    def _read(self, path: PurePosixPath) -> ElfInfo | None:
        try:
            with self.image.rootfs.open(path) as stream:
                return read_elf(stream, path)
        except MalformedElf as e:
            self.kept.warn(e.message)
            return None

    def _dependencies(self, obj: _Object) -> list[_Object]:
        info = self.info(obj.real)
        if info is None:
            return []
        if info.interp:
            self._keep_interp(obj, info.interp)
        chain, resolved = self.resolve_needed(obj, info)
        needed = Reason(ReasonKind.ELF_NEEDED, source=str(obj.real))
        deps = []
        for name, found in resolved:
            if found is None:
                self.misses[obj.real, name] = None
                continue
            self.hits.add((obj.real, name))
            self.kept.add_resolved(found.resolved, needed)
            deps.append(_Object(found.path, found.resolved.path, chain))
        return deps

    def resolve_needed(
        self, obj: _Object, info: ElfInfo
    ) -> tuple[tuple[PurePosixPath, ...], list[tuple[str, _Found | None]]]:
        """ld.so's search for each DT_NEEDED of `obj`: the DT_RPATH chain its own dependencies inherit,
        and the file each name resolves to (None: not found)."""
        chain = obj.chain if info.runpath else self._expand(info.rpath, obj, info) + obj.chain
        dirs = self._search_dirs(obj, info, chain)
        return chain, [(name, self._lookup(name, dirs, info)) for name in info.needed]

    def _keep_interp(self, obj: _Object, interp: str) -> None:
        resolved = self.image.resolve(interp)
        if _entry(self.image.rootfs, resolved) is None:
            self.kept.warn(f"ELF interpreter {interp} of {obj.real} not found in the image")
        else:
            self.kept.add_resolved(resolved, Reason(ReasonKind.ELF_INTERP, source=str(obj.real)))

    def _search_dirs(
        self, obj: _Object, info: ElfInfo, chain: tuple[PurePosixPath, ...]
    ) -> tuple[PurePosixPath, ...]:
        # ld.so's order: DT_RPATH of the loader chain (unless this object has DT_RUNPATH),
        # LD_LIBRARY_PATH, DT_RUNPATH, ld.so.conf (what ld.so.cache is built from), default dirs.
        dirs = (
            (() if info.runpath else chain)
            + self._expand(self.image.library_path, obj, info)
            + self._expand(info.runpath, obj, info)
            + self.conf_dirs
            + _default_dirs(info.elf_class)
        )
        return tuple(dict.fromkeys(dirs))

    def _expand(self, entries: tuple[str, ...], obj: _Object, info: ElfInfo) -> tuple[PurePosixPath, ...]:
        return tuple(
            self.image.cwd / text for entry in entries for text in _expand_tokens(entry, obj.found.parent, info)
        )

    def _lookup(self, name: str, dirs: tuple[PurePosixPath, ...], info: ElfInfo) -> _Found | None:
        key = (name, dirs, info.elf_class, info.machine)
        if key not in self.lookups:
            self.lookups[key] = self._search(name, dirs, info)
        return self.lookups[key]

    def _search(self, name: str, dirs: tuple[PurePosixPath, ...], info: ElfInfo) -> _Found | None:
        candidates = [self.image.cwd / name] if "/" in name else [d / name for d in dirs]
        for candidate in candidates:
            resolved = self.image.rootfs.resolve(candidate)
            if self._fits(resolved, info):
                return _Found(candidate, resolved)
        return None

    def _fits(self, resolved: Resolved, info: ElfInfo) -> bool:
        """ld.so skips files of another ELF class or machine and keeps searching."""
        entry = _entry(self.image.rootfs, resolved)
        if entry is None or entry.kind is not EntryKind.FILE:
            return False
        other = self.info(resolved.path)
        return other is not None and (other.elf_class, other.machine) == (info.elf_class, info.machine)


def _missing_library(path: PurePosixPath, name: str) -> str:
    return f"{name} needed by {path} not found in the image"


def _expand_tokens(entry: str, origin: PurePosixPath, info: ElfInfo) -> list[str]:
    """Expand $ORIGIN, $PLATFORM and $LIB; $LIB differs between distributions, so it yields each form."""
    values = {"ORIGIN": str(origin), "PLATFORM": PLATFORMS.get(info.machine, info.machine[3:].lower())}
    uses_lib = any((m[1] or m[2]) == "LIB" for m in DST.finditer(entry))
    libs = _lib_names(info) if uses_lib else ("lib",)
    return list(dict.fromkeys(_substitute(entry, values | {"LIB": lib}) for lib in libs))


def _substitute(entry: str, values: dict[str, str]) -> str:
    return DST.sub(lambda m: values[m[1] or m[2]], entry)


def _lib_names(info: ElfInfo) -> tuple[str, ...]:
    multiarch = MULTIARCH.get((info.machine, info.elf_class))
    names = ("lib64",) if info.elf_class == 64 else ()
    return names + ((f"lib/{multiarch}",) if multiarch else ()) + ("lib",)


def _default_dirs(elf_class: int) -> tuple[PurePosixPath, ...]:
    names = ("/lib64", "/usr/lib64", "/lib", "/usr/lib") if elf_class == 64 else ("/lib", "/usr/lib")
    return tuple(PurePosixPath(n) for n in names)


def _ld_so_conf_dirs(
    rootfs: RootFS, conf: PurePosixPath, seen: frozenset[PurePosixPath]
) -> tuple[PurePosixPath, ...]:
    """Library directories listed by the image's ld.so.conf, following `include` globs as ldconfig does."""
    resolved = rootfs.resolve(conf)
    entry = _entry(rootfs, resolved)
    if entry is None or entry.kind is not EntryKind.FILE or resolved.path in seen:
        return ()
    dirs: list[PurePosixPath] = []
    for line in os.fsdecode(rootfs.read(resolved.path, limit=CONFIG_READ_LIMIT)).splitlines():
        text = line.split("#", 1)[0]
        words = text.split()
        if words[:1] == ["include"]:
            for pattern in words[1:]:
                for path in _glob(rootfs, conf.parent / pattern):
                    dirs.extend(_ld_so_conf_dirs(rootfs, path, seen | {resolved.path}))
        elif words[:1] != ["hwcap"]:
            # ldconfig also splits on ":" and ",", and accepts an old "dir=type" suffix.
            parts = (p.partition("=")[0] for p in re.split(r"[\s:,]+", text))
            dirs.extend(PurePosixPath(p) for p in parts if p.startswith("/"))
    return tuple(dirs)


def _glob(rootfs: RootFS, pattern: PurePosixPath) -> list[PurePosixPath]:
    """glob(3) over the rootfs index: each component with wildcards is matched against a directory."""
    matches = [ROOT]
    for part in pattern.relative_to(ROOT).parts:
        if any(c in part for c in "*?["):
            matches = [
                m / c.name for m in matches for c in _children(rootfs, m) if fnmatch.fnmatchcase(c.name, part)
            ]
        else:
            matches = [m / part for m in matches]
    return sorted(matches)


def _children(rootfs: RootFS, directory: PurePosixPath) -> list[PurePosixPath]:
    resolved = rootfs.resolve(directory)
    return rootfs.children(resolved.path) if resolved.exists else []


def elf_dependencies(
    rootfs: RootFS, facts: ImageFacts, paths: Iterable[PurePosixPath]
) -> dict[PurePosixPath, tuple[tuple[str, PurePosixPath | None], ...]]:
    """The loader's answer for each ELF file of `paths` loaded on its own (as a program, no loader chain
    above it): each DT_NEEDED name with the file it resolves to inside the image, None when not found.
    Files that are not ELF, or whose headers cannot be read, are left out. Used by `slim xray`."""
    loader = _Loader(_Kept(rootfs), _Image.of(rootfs, facts))
    answers = {}
    for path in paths:
        info = loader.info(path)
        if info is not None:
            _, resolved = loader.resolve_needed(_Object(found=path, real=path, chain=()), info)
            answers[path] = tuple((name, found.resolved.path if found else None) for name, found in resolved)
    return answers


# ---------------------------------------------------------------- names that cost no bytes


def _keep_python_companions(kept: _Kept) -> None:
    """A used .pyc keeps its .py, and a used .py its cached .pyc.

    Python finds its own prefix by the *existence* of landmark sources (lib/python3.X/os.py) and checks a
    .pyc against its source's mtime: neither is an open the tracer sees, and without them the interpreter
    cannot even start. Tracebacks also read the sources. Each round looks at the paths kept since the last
    one only: a path's first reason never changes, and its companions are kept already.
    """
    new = list(itertools.islice(kept.reasons.items(), kept.companions_checked, None))
    kept.companions_checked += len(new)
    for path, reasons in new:
        if reasons[0].kind in (ReasonKind.RUNTIME, ReasonKind.IMPORT):
            continue  # a module kept because it can be imported keeps its source; only used modules keep bytecode
        for companion in _python_companions(kept.rootfs, path):
            kept.add(companion, Reason(ReasonKind.COMPANION, source=str(path)))


def _python_companions(rootfs: RootFS, path: PurePosixPath) -> list[PurePosixPath]:
    if path.suffix == ".pyc" and path.parent.name == "__pycache__":
        module = path.name.split(".", 1)[0]
        candidates = [path.parent.parent / f"{module}.py"]
    elif path.suffix == ".py":
        cache = path.parent / "__pycache__"
        candidates = [child for child in rootfs.children(cache) if child.name.startswith(f"{path.stem}.")]
    else:
        return []
    return [c for c in candidates if (entry := rootfs.get(c)) is not None and entry.kind is EntryKind.FILE]


def _keep_hard_links(kept: _Kept) -> None:
    for path in list(kept.reasons):
        entry = kept.rootfs.get(path)
        for other in entry.hardlink_group if entry is not None else ():
            if other != path:
                kept.add(other, Reason(ReasonKind.HARDLINK, source=str(path)))


def _keep_symlinks_and_parents(kept: _Kept) -> None:
    """Directories above kept paths, and symlinks leading to kept paths, until neither adds a path.

    The tracer reports resolved paths, so this is how /etc/os-release -> ../usr/lib/os-release and
    usr-merge links such as /lib -> usr/lib (the directory being kept as a parent) survive.
    """
    links = _symlink_targets(kept.rootfs)
    climbed = 0  # kept.reasons is in insertion order: the paths before this index have their parents
    while climbed < len(kept.reasons):
        paths = list(kept.reasons)[climbed:]
        climbed = len(kept.reasons)
        for path in paths:
            _keep_parents(kept, path)
        for resolved in links:
            if resolved.path in kept.reasons:
                kept.add_links(resolved)


def _symlink_targets(rootfs: RootFS) -> list[Resolved]:
    resolutions = (rootfs.resolve(e.path) for e in rootfs.walk(ROOT) if e.kind is EntryKind.SYMLINK)
    return [r for r in resolutions if r.exists]


def _keep_parents(kept: _Kept, path: PurePosixPath) -> None:
    # A directory is named after the paths kept for their own sake below it, not after its subdirectories.
    if kept.reasons[path][0].kind is ReasonKind.PARENT:
        return
    reason = Reason(ReasonKind.PARENT, source=str(path))
    for parent in path.parents:
        entry = kept.rootfs.get(parent)
        if entry is not None and entry.kind is EntryKind.DIR:
            kept.add(parent, reason)
