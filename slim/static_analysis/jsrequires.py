"""Node's static module graph: the modules a JavaScript file can load, by name.

Read as text, never run: `require("x")`, `import ... from "x"`, `import "x"`, `export ... from "x"` and
`import("x")` with a literal name, at any depth (inside a route's handler, a `try`). A `require` or
`import()` whose name is not a literal is reported as dynamic. Node's own modules (`fs`, `node:path`) need
no file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_STATIC = re.compile(r"""(?<![\w$.])(?:require|import)\s*\(\s*(['"`])([^'"`\\]+?)\1\s*\)"""
                     r"""|(?<![\w$.])(?:import|export)\s+(?:[\w$*{},\s]+?\s+from\s*)?(['"])([^'"\\]+?)\3"""
                     r"""|\}\s*from\s*(['"])([^'"\\]+?)\5""")  # the last line of a multi-line import
_DYNAMIC = re.compile(r"(?<![\w$.])(?:require|import)\s*\(\s*(?!['\"`])[\w$]|(?<![\w$.])(?:require|import)\s*\(\s*`[^`]*\$\{")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_LINE_COMMENT = re.compile(r"(?<![:'\"\\])//[^\n]*")
# Node's built-in modules (node 18): `require("fs")` loads no file.
BUILTIN_MODULES = frozenset("""assert async_hooks buffer child_process cluster console constants crypto dgram
diagnostics_channel dns domain events fs http http2 https inspector module net os path perf_hooks process
punycode querystring readline repl stream string_decoder sys timers tls trace_events tty url util v8 vm wasi
worker_threads zlib test""".split())


@dataclass(frozen=True)
class JsImports:
    specifiers: tuple[tuple[str, int], ...]  # (what the code names, line)
    dynamic_lines: tuple[int, ...]


def scan_js(source: bytes) -> JsImports:
    text = _BLOCK_COMMENT.sub(lambda m: "\n" * m[0].count("\n"), source.decode("utf-8", "replace"))
    specifiers: list[tuple[str, int]] = []
    dynamic: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = _LINE_COMMENT.sub("", line)
        for match in _STATIC.finditer(line):
            name = match[2] or match[4] or match[6]
            if "${" not in name:
                specifiers.append((name, number))
        dynamic.extend(number for _ in _DYNAMIC.finditer(line))
    return JsImports(tuple(specifiers), tuple(dynamic))


def is_builtin(specifier: str) -> bool:
    return specifier.startswith("node:") or specifier.split("/")[0] in BUILTIN_MODULES


def package_name(specifier: str) -> str | None:
    """The package a bare specifier names (`lodash/fp` -> `lodash`, `@scope/pkg/x` -> `@scope/pkg`); None
    for a relative or absolute path."""
    if specifier.startswith((".", "/")):
        return None
    parts = specifier.split("/")
    return "/".join(parts[:2]) if specifier.startswith("@") and len(parts) > 1 else parts[0]
