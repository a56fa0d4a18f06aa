"""What a security review asks of a slimmed image: which tools an attacker would use are gone.

Package managers, shells, interpreters, compilers and network tools are found by name in the command
directories (where a shell would find them on PATH); setuid/setgid programs and files with capabilities by
their mode and `security.capability` xattr. Each category lists its files in the original and in the
slimmed image, so what remains (a shell the app runs, its interpreter) is as visible as what went.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.model import EntryKind
from slim.image.rootfs import RootFS
from .xray import CAPABILITY_XATTR

COMMAND_DIRS = tuple(
    PurePosixPath(d) for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
)
# (key, label, command names: a regular expression matched against the whole file name)
TOOL_CATEGORIES = (
    ("package-managers", "package managers",
     r"apt|apt-get|apt-cache|aptitude|dpkg|dpkg-deb|apk|rpm|yum|dnf|microdnf|zypper|pip[0-9.]*|easy_install|"
     r"npm|npx|yarn|pnpm|gem|bundle|composer|cpan"),
    ("shells", "shells", r"sh|bash|dash|ash|zsh|ksh|mksh|csh|tcsh|fish|busybox"),
    ("interpreters", "interpreters",
     r"python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*|lua[0-9.]*|tclsh[0-9.]*|java|jshell|irb"),
    ("compilers", "compilers and build tools",
     r"gcc(-[0-9]+)?|g\+\+(-[0-9]+)?|cc|c\+\+|clang(\+\+)?(-[0-9]+)?|ld|ld\.bfd|ld\.gold|as|make|go|rustc|"
     r"cargo|javac|tcc"),
    ("network-tools", "network tools",
     r"curl|wget|nc|nc\.openbsd|nc\.traditional|netcat|ncat|socat|telnet|ssh|scp|sftp|ftp|tftp|rsync|nmap|"
     r"dig|nslookup|host|ping|ping6|tcpdump|openssl"),
)


@dataclass(frozen=True)
class SurfaceCategory:
    key: str
    label: str
    original: tuple[str, ...]  # paths in the original image
    slimmed: tuple[str, ...]  # of those, the paths the slimmed image keeps


def attack_surface(rootfs: RootFS, kept: Collection[PurePosixPath]) -> tuple[SurfaceCategory, ...]:
    """Each category's files in the original (`rootfs`) and in the slimmed image (`kept`)."""
    commands = _commands(rootfs)
    categories = [
        _category(key, label, [path for path in commands if re.fullmatch(names, path.name)], kept)
        for key, label, names in TOOL_CATEGORIES
    ]
    files = [entry for entry in rootfs.entries.values() if entry.kind is EntryKind.FILE]
    for key, label, test in (
        ("setuid", "setuid or setgid programs", lambda e: bool(e.mode & 0o6000)),
        ("capabilities", "files with capabilities", lambda e: CAPABILITY_XATTR in e.xattrs),
    ):
        categories.append(_category(key, label, [entry.path for entry in files if test(entry)], kept))
    return tuple(categories)


def _category(key: str, label: str, paths: list[PurePosixPath], kept: Collection[PurePosixPath]) -> SurfaceCategory:
    ordered = sorted(set(paths))
    return SurfaceCategory(key, label, tuple(map(str, ordered)), tuple(str(p) for p in ordered if p in kept))


def _commands(rootfs: RootFS) -> list[PurePosixPath]:
    """Executables and symlinks in the command directories, each directory once (with a merged /usr,
    /bin is /usr/bin): a symlink counts as a command when it leads to an executable file."""
    resolved = (rootfs.resolve(d) for d in COMMAND_DIRS)
    directories = dict.fromkeys(r.path for r in resolved if r.exists)
    return [path for directory in directories for path in rootfs.children(directory) if _is_command(rootfs, path)]


def _is_command(rootfs: RootFS, path: PurePosixPath) -> bool:
    resolved = rootfs.resolve(path)
    entry = rootfs.get(resolved.path) if resolved.exists else None
    return entry is not None and entry.kind is EntryKind.FILE and bool(entry.mode & 0o111)
