"""Ruby's static require graph: the features a Ruby file can load, and which files those are.

Read as text, never run: every `require "x"`, `require_relative "x"` and `autoload :X, "x"` with a literal
name, at any depth (inside methods, `begin`/`rescue LoadError`, conditions). A call whose name is not a
literal (`require name`, `require "rubygems/#{x}"`) is reported as dynamic: its caller's whole library is
kept instead. Features are resolved as Ruby's `require` does, over the image's files: each directory of the
load path, `x.rb` then the native extension `x.so`.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.image.rootfs import RootFS
from slim.model import EntryKind

# `require "x"`, `require_relative 'x'`, `autoload :Name, "x"`; not `def require(path)` nor `obj.require`.
_CALL = re.compile(r"""(?<![\w.:])(?<!def )(require_relative|require|autoload\s*\(?\s*:?\w+\s*,)\s*\(?\s*(.)""")
_LITERAL = re.compile(r"""(['"])([^'"\\]+)\1""")
_BLOCK_COMMENT = re.compile(r"^=begin\b.*?^=end\b", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Require:
    name: str  # the feature, without extension unless the code gave one
    line: int
    relative: bool  # require_relative: from the requiring file's directory


@dataclass(frozen=True)
class RubyRequires:
    requires: tuple[Require, ...]
    dynamic_lines: tuple[int, ...]  # requires whose name is not a literal


def scan_requires(source: bytes) -> RubyRequires:
    """The requires of a Ruby file's source (comments skipped)."""
    text = _BLOCK_COMMENT.sub(lambda m: "\n" * m[0].count("\n"), source.decode("utf-8", "replace"))
    requires: list[Require] = []
    dynamic: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = _without_comment(line)
        for call in _CALL.finditer(line):
            literal = _LITERAL.match(line, call.start(2))
            if literal and not (literal[1] == '"' and "#{" in literal[2]):
                requires.append(Require(literal[2], number, call[1] == "require_relative"))
            else:
                dynamic.append(number)
    return RubyRequires(tuple(requires), tuple(dynamic))


def _without_comment(line: str) -> str:
    """The line up to a `#` outside quotes (`"#{x}"` is interpolation, not a comment)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote and line[index - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def ruby_load_path(rootfs: RootFS, version: str, env: dict[str, str]) -> tuple[PurePosixPath, ...]:
    """$LOAD_PATH of a Ruby X.Y whose prefix is /usr/local or /usr (Debian's and a source build's layout):
    RUBYLIB, site_ruby, vendor_ruby, the standard library (each with its arch-specific directory), then the
    `lib` directories of installed gems (what rubygems adds when a require names one)."""
    api = f"{version}.0"
    found = [PurePosixPath(d) for d in env.get("RUBYLIB", "").split(":") if d.startswith("/")]
    prefixes = (PurePosixPath("/usr/local"), PurePosixPath("/usr"))
    arch = {prefix: [c for c in rootfs.children(prefix / "lib") if _is_dir(rootfs, c / "ruby")
                     or _is_dir(rootfs, c / "site_ruby")] for prefix in prefixes}
    for kind in ("site_ruby", "vendor_ruby"):
        for prefix in prefixes:
            for base in [prefix / "lib", prefix / "lib" / "ruby"] + [d for a in arch[prefix] for d in (a, a / "ruby")]:
                found += [base / kind / api, base / kind]
    for prefix in prefixes:
        found += [base / "ruby" / api for base in [prefix / "lib"] + arch[prefix]]
    gem_homes = [PurePosixPath(d) for d in (env.get("GEM_HOME", "") + ":" + env.get("GEM_PATH", "")).split(":")
                 if d.startswith("/")]
    gem_homes += [prefix / "lib" / "ruby" / "gems" / api for prefix in prefixes] + [PurePosixPath("/var/lib/gems") / api]
    found += [gem / "lib" for home in gem_homes for gem in rootfs.children(home / "gems")]
    return tuple(d for d in dict.fromkeys(found) if _is_dir(rootfs, d))


def resolve_require(rootfs: RootFS, load_path: tuple[PurePosixPath, ...], requirer: PurePosixPath,
                    wanted: Require) -> list[PurePosixPath]:
    """The files a require can load: the first `.rb` and the first `.so` found (which one wins depends on
    the load path's order and the extension Ruby tries first; both are kept), or the named file itself."""
    directories = (requirer.parent,) if wanted.relative else load_path
    name = wanted.name
    if wanted.relative or name.endswith((".rb", ".so")):
        candidates = [name] if name.endswith((".rb", ".so")) else [f"{name}.rb"]
    else:
        candidates = [f"{name}.rb", f"{name}.so"]
    found = []
    for candidate in candidates:
        for directory in directories:
            path = PurePosixPath(posixpath.normpath(directory / candidate))  # require_relative "../x"
            entry = rootfs.get(path)
            if entry is not None and entry.kind is EntryKind.FILE:
                found.append(path)
                break
    return found


def library_of(load_path: tuple[PurePosixPath, ...], path: PurePosixPath) -> PurePosixPath | None:
    """The library a file of the load path belongs to: `rubygems/x.rb` -> `rubygems`, `set.rb` -> `set`
    (a directory, or a file without its extension); None for a file outside the load path."""
    top = max((d for d in load_path if d in path.parents), key=lambda d: len(d.parts), default=None)
    if top is None:
        return None
    first = path.relative_to(top).parts[0]
    return top / (first.rsplit(".", 1)[0] if len(path.relative_to(top).parts) == 1 else first)


def _is_dir(rootfs: RootFS, path: PurePosixPath) -> bool:
    entry = rootfs.get(path)
    return entry is not None and entry.kind is EntryKind.DIR
