"""Programs an application's code starts by name, found by reading the code, never running it.

Python is read with `ast`: `subprocess.*`, `os.system`/`popen`/`exec*`/`spawn*`/`posix_spawn*`,
`shutil.which`, asyncio's subprocess functions, called through their module or imported from it.
JavaScript is parsed with tree-sitter: `exec`/`execSync`/`execFile`/`execFileSync`/`spawn`/`spawnSync` of
`child_process` (as `cp.exec(...)` or destructured). Ruby (backticks, `%x`, `system`, `spawn`, `exec`,
`Open3.*`) and PHP (`exec`, `shell_exec`, `system`, `passthru`, `proc_open`, `popen`) by their call shape.
The program is the first element of an argument list, or the first word of a command string; a name that
is not a literal is reported as unresolved.
"""
from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter_javascript
from tree_sitter import Language, Node, Parser

JAVASCRIPT = Language(tree_sitter_javascript.language())

# Python: module -> its functions that start a program; the value says how the program is named.
ARGV, COMMAND_LINE, PATH_SECOND = "argv", "command line", "path second"  # spawnl(mode, path, ...)
PYTHON_STARTERS = {
    "subprocess": {"run": ARGV, "call": ARGV, "check_call": ARGV, "check_output": ARGV, "Popen": ARGV,
                   "getoutput": COMMAND_LINE, "getstatusoutput": COMMAND_LINE},
    "os": {"system": COMMAND_LINE, "popen": COMMAND_LINE, "posix_spawn": ARGV, "posix_spawnp": ARGV,
           **{f"exec{s}": ARGV for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")},
           **{f"spawn{s}": PATH_SECOND for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}},
    "shutil": {"which": ARGV},
    "asyncio": {"create_subprocess_exec": ARGV, "create_subprocess_shell": COMMAND_LINE},
}
JS_STARTERS = {"exec": COMMAND_LINE, "execSync": COMMAND_LINE, "execFile": ARGV, "execFileSync": ARGV,
               "spawn": ARGV, "spawnSync": ARGV}
_RUBY = re.compile(r"""(?:`([^`#]*)`|%x\{([^}#]*)\}|\b(?:system|spawn|exec|Open3\.\w+|IO\.popen)\s*\(?\s*(?:\[\s*)?(["'])(.*?)\3)""")
_PHP = re.compile(r"""\b(?:exec|shell_exec|system|passthru|proc_open|popen)\s*\(\s*(?:\[\s*)?(["'])(.*?)\1""")
_SHELL_WORD = re.compile(r"[\w./+-]+")


@dataclass(frozen=True)
class ProgramCall:
    line: int
    program: str | None  # None: the name is not a literal
    text: str = ""  # what was written, for an unresolved one


def programs_in(language: str, source: bytes) -> list[ProgramCall]:
    scan = {"python": _python_calls, "javascript": _javascript_calls, "ruby": _ruby_calls, "php": _php_calls}
    return list(scan[language](source))


def language_of(name: str, head: bytes) -> str | None:
    """The language of a source file by its name, or its #! line."""
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    by_suffix = {"py": "python", "js": "javascript", "mjs": "javascript", "cjs": "javascript", "rb": "ruby",
                 "php": "php"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    first = head.split(b"\n", 1)[0]
    if first.startswith(b"#!"):
        for word, language in ((b"python", "python"), (b"node", "javascript"), (b"ruby", "ruby"), (b"php", "php")):
            if word in first:
                return language
    return None


def first_word(command_line: str) -> str | None:
    """The program a shell command line starts ("zip -r out.zip ." -> zip); None if it is not a plain word."""
    try:
        words = shlex.split(command_line)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("="):
        words = words[1:]  # VAR=value prefixes
    return words[0] if words and _SHELL_WORD.fullmatch(words[0]) else None


# ---------------------------------------------------------------- Python


def _python_calls(source: bytes) -> Iterator[ProgramCall]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    imported = {alias.asname or alias.name: (node.module, alias.name)
                for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module in PYTHON_STARTERS
                for alias in node.names}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        how = _python_starter(node.func, imported)
        if how is not None:
            yield _python_program(node, how)


def _python_starter(func: ast.expr, imported: dict[str, tuple[str, str]]) -> str | None:
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return PYTHON_STARTERS.get(func.value.id, {}).get(func.attr)
    if isinstance(func, ast.Name) and func.id in imported:
        module, name = imported[func.id]
        return PYTHON_STARTERS[module].get(name)
    return None


def _python_program(call: ast.Call, how: str) -> ProgramCall:
    args = call.args[1:] if how == PATH_SECOND else call.args
    first = args[0] if args else next((k.value for k in call.keywords if k.arg in ("args", "cmd", "path")), None)
    shell = how == COMMAND_LINE or any(k.arg == "shell" and _true(k.value) for k in call.keywords)
    if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
        first = first.elts[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        program = first_word(first.value) if shell or " " in first.value.strip() else first.value
        return ProgramCall(call.lineno, program, first.value)
    return ProgramCall(call.lineno, None, ast.unparse(first) if first is not None else "")


def _true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


# ---------------------------------------------------------------- JavaScript


def _javascript_calls(source: bytes) -> Iterator[ProgramCall]:
    if b"child_process" not in source:
        return  # the functions are child_process's, so a file that never loads it starts nothing
    tree = Parser(JAVASCRIPT).parse(source)
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node.type != "call_expression":
            continue
        function, arguments = node.child_by_field_name("function"), node.child_by_field_name("arguments")
        name = function.child_by_field_name("property") if function.type == "member_expression" else function
        how = JS_STARTERS.get(_js_text(name)) if name is not None else None
        if how is None or arguments is None or not arguments.named_children:
            continue
        yield _javascript_program(node.start_point[0] + 1, arguments.named_children[0], how)


def _javascript_program(line: int, first: Node, how: str) -> ProgramCall:
    text = _js_string(first)
    if text is None:
        return ProgramCall(line, None, _js_text(first))
    program = first_word(text) if how == COMMAND_LINE else text
    return ProgramCall(line, program, text)


def _js_string(node: Node) -> str | None:
    """A string literal's value, or a template string's without substitutions."""
    if node.type not in ("string", "template_string") or any(c.type == "template_substitution" for c in node.named_children):
        return None
    return _js_text(node)[1:-1]


def _js_text(node: Node) -> str:
    return node.text.decode(errors="replace") if node.text is not None else ""


# ---------------------------------------------------------------- Ruby and PHP


def _ruby_calls(source: bytes) -> Iterator[ProgramCall]:
    text = source.decode(errors="replace")
    for match in _RUBY.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        command = next(group for group in (match[1], match[2], match[4]) if group is not None)
        yield ProgramCall(line, first_word(command), command)


def _php_calls(source: bytes) -> Iterator[ProgramCall]:
    text = source.decode(errors="replace")
    for match in _PHP.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield ProgramCall(line, first_word(match[2]), match[2])
