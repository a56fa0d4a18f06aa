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
from typing import Sequence

from . import pyscan
from .parallel import from_both_ends
from .pyscan import ImportName, ModuleImports, scan_imports

CACHE_NAME = "pyimports.sqlite"
# The scanner's code and the parsing Python: what decides the findings besides the source.
_SCANNER = hashlib.sha256(Path(pyscan.__file__).read_bytes() + sys.version.encode()).digest()
_SCHEMA = "CREATE TABLE IF NOT EXISTS scans (key BLOB PRIMARY KEY, found TEXT)"
_NOT_PYTHON = "null"  # scan_imports gave None: not Python 3
WORKER = "slim.static_analysis.scan_worker"


class ScanCache:
    def __init__(self, directory: Path):
        self._db = _open(directory)

    def scan(self, source: bytes, main: bool = False) -> ModuleImports | None:
        """scan_imports(source, main), from the cache when these bytes were scanned before."""
        return self.scan_many([(source, main)])[0]

    def scan_many(self, sources: Sequence[tuple[bytes, bool]]) -> list[ModuleImports | None]:
        """scan_imports of each (source, main), from the cache where it has them; the others are parsed, by
        a second process too when they are many (a round of the closure new to the cache), and stored."""
        keys = [hashlib.sha256(_SCANNER + bytes([main]) + source).digest() for source, main in sources]
        found = {key: cached[0] for key in set(keys) if (cached := self._cached(key)) is not None}
        missing = {key: item for key, item in zip(keys, sources) if key not in found}
        for key, stored in zip(missing, from_both_ends(list(missing.values()), parsed, WORKER)):
            self._write(key, stored)
            found[key] = _decoded(json.loads(stored))
        return [found[key] for key in keys]

    def _cached(self, key: bytes) -> tuple[ModuleImports | None] | None:
        """(what was found,) when the cache has it."""
        stored = self._read(key)
        if stored is None:
            return None
        try:
            return (_decoded(json.loads(stored)),)
        except (ValueError, TypeError):
            return None  # a row written by something else or damaged: scanned again and stored right

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


def parsed(item: tuple[bytes, bool]) -> str:
    """What the cache stores for scan_imports(source, main) of item (source, main): JSON text on one line."""
    found = scan_imports(*item)
    return _NOT_PYTHON if found is None else json.dumps(_encoded(found), separators=(",", ":"))


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
