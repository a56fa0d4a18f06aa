"""What `scan_imports` found in a module's source, kept between builds by the digest of that source.

Parsing is most of a Python app's closure (its standard library and site-packages are thousands of modules)
and the same bytes come back on every build of an image on the same base: a CI pipeline slims on every push.
The key is the source's SHA-256 together with the scanner's own code and the Python that parses it, so a
changed scanner or interpreter never reads another's findings. The cache is an SQLite file in the user's
cache directory: concurrent builds share it, and one that cannot be opened or written (a read-only home, a
full disk, a damaged file) only means parsing again.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

from . import pyimports
from .pyimports import ImportName, ModuleImports, scan_imports

CACHE_NAME = "pyimports.sqlite"
# The scanner's code and the parsing Python: what decides the findings besides the source.
_SCANNER = hashlib.sha256(Path(pyimports.__file__).read_bytes() + sys.version.encode()).digest()
_SCHEMA = "CREATE TABLE IF NOT EXISTS scans (key BLOB PRIMARY KEY, found TEXT)"
_NOT_PYTHON = "null"  # scan_imports gave None: not Python 3


class ScanCache:
    def __init__(self, directory: Path):
        self._db = _open(directory)

    def scan(self, source: bytes, main: bool = False) -> ModuleImports | None:
        """scan_imports(source, main), from the cache when these bytes were scanned before."""
        key = hashlib.sha256(_SCANNER + bytes([main]) + source).digest()
        stored = self._read(key)
        if stored is not None:
            try:
                return _decoded(json.loads(stored))
            except (ValueError, TypeError):
                pass  # a row written by something else or damaged: scanned again and stored right
        found = scan_imports(source, main)
        self._write(key, _NOT_PYTHON if found is None else json.dumps(_encoded(found), separators=(",", ":")))
        return found

    def _read(self, key: bytes) -> str | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT found FROM scans WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            self._db = None
            return None
        return row[0] if row else None

    def _write(self, key: bytes, found: str) -> None:
        if self._db is None:
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO scans VALUES (?, ?)", (key, found))
        except sqlite3.Error:
            self._db = None


def _open(directory: Path) -> sqlite3.Connection | None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Autocommit: every finding is stored at once, so a build that is interrupted keeps what it parsed;
        # no fsync per row (a lost row is only parsed again).
        db = sqlite3.connect(directory / CACHE_NAME, timeout=10, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(_SCHEMA)
        return db
    except (OSError, sqlite3.Error):
        return None


def _encoded(found: ModuleImports) -> list:
    return [_names(found.names), list(found.dynamic_lines), [list(word) for word in found.words]]


def _names(names: tuple[ImportName, ...]) -> list:
    return [[n.name, n.line, n.level, list(n.members), _names(n.fallback_for)] for n in names]


def _decoded(stored: list | None) -> ModuleImports | None:
    if stored is None:
        return None
    names, dynamic_lines, words = stored
    return ModuleImports(_imports(names), tuple(dynamic_lines), tuple((word, line) for word, line in words))


def _imports(names: list) -> tuple[ImportName, ...]:
    return tuple(
        ImportName(name, line, level, tuple(members), _imports(fallback_for))
        for name, line, level, members, fallback_for in names
    )
