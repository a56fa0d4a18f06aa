"""The values passed between pipeline stages.

    ImageFacts -> Trace -> Closure -> ImagePlan -> BuiltImage -> Verification -> Report

Every stage is a function over these frozen dataclasses; none of them touches the engine or the kernel
directly (those sit behind slim/adapters).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping, Protocol

from probes.interface import ProbeOutcome  # probes own what they report; a run result holds it

ROOT = PurePosixPath("/")


def at_or_under(path: PurePosixPath, top: PurePosixPath) -> bool:
    """`path` is `top` or inside it (lexically: symlinks are the caller's business)."""
    return under_any(path, (top,))


def under_any(path: PurePosixPath, tops: Iterable[PurePosixPath]) -> bool:
    """`path` is one of `tops` or below one. Compared as text: the closure asks for every directory of the
    image, and `path.parents` is slow to search."""
    text = str(path)
    return any(text == str(top) or text.startswith(str(top).rstrip("/") + "/") for top in tops)


# ---------------------------------------------------------------- inspect


@dataclass(frozen=True)
class ImageFacts:
    """What the engine says about the source image, before anything runs."""

    ref: str  # what the user typed
    id: str  # sha256:...
    repo_tags: tuple[str, ...]
    size: int  # bytes, as the engine counts them (uncompressed)
    os: str
    architecture: str
    created: str
    layer_diff_ids: tuple[str, ...]
    # Docker's `Config` object verbatim (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Volumes,
    # Labels, StopSignal, Healthcheck, ...): the slimmed image gets exactly this back.
    config: Mapping[str, Any]

    @property
    def entrypoint(self) -> tuple[str, ...]:
        return tuple(self.config.get("Entrypoint") or ())

    @property
    def cmd(self) -> tuple[str, ...]:
        return tuple(self.config.get("Cmd") or ())

    @property
    def command(self) -> tuple[str, ...]:
        """argv the container runs by default: Entrypoint followed by Cmd."""
        return self.entrypoint + self.cmd

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or ())
        return {name: value for name, _, value in pairs}

    @property
    def exposed_tcp_ports(self) -> tuple[int, ...]:
        ports = (spec.partition("/") for spec in self.config.get("ExposedPorts") or {})
        return tuple(sorted(int(port) for port, _, proto in ports if proto in ("", "tcp")))

    @property
    def volumes(self) -> tuple[PurePosixPath, ...]:
        return tuple(sorted(PurePosixPath(path) for path in self.config.get("Volumes") or {}))

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    @property
    def working_dir(self) -> PurePosixPath:
        return PurePosixPath(self.config.get("WorkingDir") or "/")


# ---------------------------------------------------------------- the original filesystem


# Bytes of an image's small config file (ld.so.conf, nsswitch.conf, passwd) read for parsing: real ones are
# a few KB, and a hostile image must not make us read a gigabyte into memory.
CONFIG_READ_LIMIT = 1 << 20


class EntryKind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


@dataclass(frozen=True)
class FileEntry:
    """One path of the image's merged filesystem, with the metadata the slimmed layer must reproduce."""

    path: PurePosixPath  # absolute, inside the image
    kind: EntryKind
    mode: int  # permission bits incl. setuid/setgid/sticky (no type bits)
    uid: int
    gid: int
    mtime: int
    size: int = 0  # FILE only
    link_target: str | None = None  # SYMLINK only: the target text as stored
    # FILE only: paths that share this file's inode (hard links), this path included, sorted.
    hardlink_group: tuple[PurePosixPath, ...] = ()
    xattrs: Mapping[str, bytes] = field(default_factory=dict)  # e.g. security.capability
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""
    layer: int = -1  # index of the image layer the entry comes from (0 = bottom), -1 when unknown


# ---------------------------------------------------------------- run and trace


class Access(enum.Enum):
    OPEN = "open"
    EXEC = "exec"
    LIST = "list"  # a directory was opened (listed)


@dataclass(frozen=True)
class TracedPath:
    """A path the traced container touched, as the container sees it (symlinks already resolved)."""

    path: PurePosixPath
    accesses: frozenset[Access]
    program: str  # executable of the first process that touched it ("" when it had already exited)
    phase: str  # what was running then: "startup", or the name of the probe


@dataclass(frozen=True)
class TraceHealth:
    events: int  # notifications read from the kernel
    overflow: bool  # the kernel's queue overflowed: events were lost, the trace is incomplete
    foreign_events: int = 0  # events dropped because they came from outside the container

    @property
    def complete(self) -> bool:
        return not self.overflow


@dataclass(frozen=True)
class Lookup:
    """A path a traced process checked (stat, access, readlink, chdir, an O_PATH open) without opening it."""

    path: PurePosixPath  # absolute, as the process spelled it: symlinks and ".." not resolved yet
    follow: bool  # False when the call looks at a symlink itself (lstat, readlink, AT_SYMLINK_NOFOLLOW)
    program: str  # executable of the first process that looked it up ("" when it had already exited)
    phase: str  # what was running then: "startup", or the name of the probe


@dataclass(frozen=True)
class LookupHealth:
    traced: bool  # False: only opens were traced (the note says why)
    calls: int = 0  # lookup calls of traced processes (before deduplication)
    note: str = ""  # why not traced; or, traced, why the first way was not used or what could not be recorded
    mechanism: str = ""  # "ebpf" or "seccomp" when traced


@dataclass(frozen=True)
class RunOutcome:
    """How the traced (or verified) container behaved as a whole."""

    mode: str  # "server" (probed, then stopped) or "batch" (ran to exit)
    exit_code: int | None  # None when we stopped it
    running_after_probes: bool
    probes: tuple[ProbeOutcome, ...]
    output_tail: str = ""  # last lines of the container's output, for error messages
    # (address, port) of every TCP socket that listened in the container once the probes were done,
    # loopback ones included: a slimmed run is probed only once it listens on them all.
    listening: tuple[tuple[str, int], ...] = ()
    paused: bool = False  # frozen from outside (`docker pause`) when the probes were done
    # server: seconds it was left running after the probes, until it was stopped or exited
    lingered: float = 0.0


class Sightings(Protocol):
    """What the closure reads of a trace: the paths its processes used, and those they looked up."""

    @property
    def paths(self) -> tuple[TracedPath, ...]: ...

    @property
    def lookups(self) -> tuple[Lookup, ...]: ...


@dataclass(frozen=True)
class Seen:
    """Sightings without a run: what a trace had seen when the probes ended, or paths to check."""

    paths: tuple[TracedPath, ...]
    lookups: tuple[Lookup, ...] = ()


@dataclass(frozen=True)
class Trace:
    paths: tuple[TracedPath, ...]
    health: TraceHealth
    run: RunOutcome
    lookups: tuple[Lookup, ...] = ()
    lookup_health: LookupHealth = LookupHealth(traced=False, note="lookups were not traced")


# ---------------------------------------------------------------- closure


class ReasonKind(enum.Enum):
    TRACED = "traced"  # opened/executed/listed during the run
    ELF_INTERP = "elf-interpreter"  # PT_INTERP of a kept ELF
    ELF_NEEDED = "elf-needed"  # DT_NEEDED of a kept ELF
    SYMLINK = "symlink"  # a symlink that leads to a kept path
    PARENT = "parent-directory"  # a directory above a kept path
    ENTRYPOINT = "entrypoint"  # the executable the container starts
    SHEBANG = "shebang"  # interpreter named by a kept script's #! line
    ALWAYS = "always-kept"  # /etc/passwd, /etc/group, ...
    INCLUDE = "include-path"  # --include-path
    VOLUME = "volume-seed"  # content the image ships under a declared VOLUME
    HARDLINK = "hard-link"  # another name of a kept file's inode
    COMPANION = "companion"  # the other half of a pair that works together: foo.py and its foo.*.pyc
    STATE_DIR = "state-directory"  # a directory where programs create files at run time (kept empty)
    # The rules of slim/rules/ (issue 6): what a run will plausibly need although it did not touch it.
    APP_FILE = "app-file"  # added by the image's own application layers
    DATA_TREE = "data-tree"  # part of a non-root-owned data directory the run touched (a database's)
    PACKAGE = "package"  # part of a language package one file of which was used
    RUNTIME = "runtime"  # standard library or native helper of a kept interpreter or VM
    TIMEZONE = "timezone-data"  # the timezone database, read by zone name
    CA_CERTIFICATES = "ca-certificates"  # trust roots of a kept TLS library
    NSS = "nss"  # name service switch configuration and modules
    GCONV = "gconv"  # iconv's conversion modules
    LOCALE = "locale"  # the compiled locale the image's Env sets
    EMPTY_DIRECTORY = "empty-subdirectory"  # an empty subdirectory of a directory the run used
    LOOKED_UP = "looked-up"  # checked (stat, access, readlink) during the run without being opened
    # Issue 12: what scanners and auditors read, kept although no run needs it.
    PACKAGE_DB = "package-database"  # the package manager's database, trimmed to the kept packages
    LICENSE = "license"  # /usr/share/doc/PKG/copyright of a kept package
    # What deployed code can reach although the run did not (issue 10, slim/rules/reach.py).
    DECLARED = "declared-dependency"  # a package the app or a used package declares it depends on
    IMPORT = "import"  # a module a kept module imports (static import graph)
    SCRIPT_COMMAND = "script-command"  # a command or tested path of an entrypoint shell script
    NAMED_PROGRAM = "named-program"  # a program the app's code starts by name
    OWN_CONFIGURATION = "own-configuration"  # /etc file the image's own layers added or changed


@dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    source: str = ""  # what caused it: the program, the ELF that needs it, the file the symlink leads to
    detail: str = ""  # extra words for people, e.g. the probe during which it was opened

    def describe(self) -> str:
        words = {
            ReasonKind.TRACED: "traced",
            ReasonKind.ELF_INTERP: "ELF interpreter of",
            ReasonKind.ELF_NEEDED: "library needed by",
            ReasonKind.SYMLINK: "symlink on the path to",
            ReasonKind.PARENT: "directory above",
            ReasonKind.ENTRYPOINT: "entrypoint",
            ReasonKind.SHEBANG: "interpreter of script",
            ReasonKind.ALWAYS: "always kept",
            ReasonKind.INCLUDE: "--include-path",
            ReasonKind.VOLUME: "seed data of volume",
            ReasonKind.HARDLINK: "hard link of",
            ReasonKind.STATE_DIR: "run-time state directory",
            ReasonKind.COMPANION: "companion of",
            ReasonKind.APP_FILE: "application file from",
            ReasonKind.DATA_TREE: "data directory",
            ReasonKind.PACKAGE: "part of package",
            ReasonKind.RUNTIME: "runtime of",
            ReasonKind.TIMEZONE: "timezone database",
            ReasonKind.CA_CERTIFICATES: "CA certificates for",
            ReasonKind.NSS: "name service switch for",
            ReasonKind.GCONV: "iconv modules for",
            ReasonKind.LOCALE: "locale",
            ReasonKind.EMPTY_DIRECTORY: "empty subdirectory of",
            ReasonKind.LOOKED_UP: "looked up by",
            ReasonKind.PACKAGE_DB: "package database, trimmed to the kept packages of",
            ReasonKind.LICENSE: "license of package",
            ReasonKind.DECLARED: "dependency declared by",
            ReasonKind.IMPORT: "imported by",
            ReasonKind.SCRIPT_COMMAND: "called by",
            ReasonKind.NAMED_PROGRAM: "run by",
            ReasonKind.OWN_CONFIGURATION: "configuration written by",
        }[self.kind]
        if self.kind in LINE_REASONS and self.detail.isdigit():
            return f"{words} {self.source}:{self.detail}"  # FILE:LINE, as editors and compilers print it
        return " ".join(part for part in (words, self.source, self.detail) if part)


# Reasons whose detail is the line of their source file that caused them.
LINE_REASONS = frozenset({ReasonKind.IMPORT, ReasonKind.SCRIPT_COMMAND, ReasonKind.NAMED_PROGRAM})


@dataclass(frozen=True)
class Closure:
    """Every path the slimmed image keeps, each with the reasons it is kept (first reason = main one)."""

    kept: Mapping[PurePosixPath, tuple[Reason, ...]]
    warnings: tuple[str, ...] = ()
    # Kept files whose bytes the slimmed image holds in a new form: the package databases, trimmed.
    rewritten: Mapping[PurePosixPath, bytes] = field(default_factory=dict)
    packages: PackageSummary | None = None  # None: --no-package-db


@dataclass(frozen=True)
class InstalledPackage:
    """One entry of an OS package database, as the database states it."""

    manager: str  # "dpkg" or "apk"
    name: str
    version: str
    architecture: str
    source: str = ""  # the source package, when it differs from the name
    # Bytes, as the database states them: `slim xray` lists them. The build report's schema has no such field,
    # so its JSON leaves them out, and they play no part in telling packages apart.
    installed_size: int | None = field(default=None, compare=False)

    def json_omitted(self) -> tuple[str, ...]:
        return ("installed_size",)


@dataclass(frozen=True)
class PackageSummary:
    """The OS packages of the original image, split by whether any of their payload files was kept."""

    kept: tuple[InstalledPackage, ...]
    removed: tuple[InstalledPackage, ...]
    unsupported: tuple[str, ...] = ()  # databases found but not read (rpm)


# ---------------------------------------------------------------- assemble


@dataclass(frozen=True)
class ImagePlan:
    """The slimmed image as a value: sorted entries plus the image config. No I/O went into it."""

    entries: tuple[FileEntry, ...]  # sorted by path, parents before children
    config: Mapping[str, Any]  # Docker Config object for the new image (original + our label)
    created: str  # copied from the source image so the same input gives the same image id
    source_id: str
    os: str = "linux"
    architecture: str = "amd64"
    # Bytes that replace the original's for these paths (trimmed package databases, the stored SBOM).
    contents: Mapping[PurePosixPath, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltImage:
    id: str
    layer_diff_id: str
    layer_size: int  # uncompressed tar bytes
    size: int  # as the engine counts it
    files: int
    compressed_size: int | None = None  # gzip size of the layer, what a registry would store
    compressed_by: str | None = None  # MEASURED or ESTIMATED (slim/build/sizes.py)


# ---------------------------------------------------------------- verify


@dataclass(frozen=True)
class ProbeComparison:
    probe: str
    original: str
    slimmed: str
    same: bool
    checked: tuple[str, ...] = ()  # the fingerprint keys compared, e.g. "GET /a.html" for each URL visited
    readiness: str = ""  # how the slimmed run decided the application was ready before this probe
    volatile: Mapping[str, str] = field(default_factory=dict)  # key -> what was compared of it


@dataclass(frozen=True)
class Verification:
    invariant_failures: tuple[str, ...]  # static checks of the slimmed filesystem
    comparisons: tuple[ProbeComparison, ...]
    missing_in_slimmed: tuple[str, ...] = ()  # paths the slimmed run tried to open but lacks (hints)

    @property
    def passed(self) -> bool:
        return not self.invariant_failures and all(c.same for c in self.comparisons)

    def problems(self) -> list[str]:
        """One line per failed invariant or divergent probe."""
        return list(self.invariant_failures) + [
            f"{c.probe}: original {c.original}; slimmed {c.slimmed}" for c in self.comparisons if not c.same
        ]

    def summary(self) -> str:
        problems = self.problems()
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        return "; ".join(problems[:2]) + more
