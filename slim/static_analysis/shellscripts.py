"""What a shell script can run, whichever branch it takes: parsed with tree-sitter's bash grammar (it reads
POSIX sh, dash and bash: `case`, functions, `$(...)`, here-documents), never run.

Every simple command anywhere in the script (each branch of `if`/`case`, loops, pipelines, command
substitutions, functions) names a program unless it is a builtin or a function of the script; wrappers
(`exec`, `command`, `env`, `nohup`, `gosu`, ...) run their first operand, and `set -- prog "$@"` names the
program a later `exec "$@"` runs. `.`/`source` name a script read in turn, and `[ -f PATH ]`/`test -x PATH`
name a path the script checks for. A command or path that is not a literal word is reported as such.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

BASH = Language(tree_sitter_bash.language())

# POSIX special and regular builtins and bash's: they need no file.
BUILTINS = frozenset("""
    . : [ [[ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo
    enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd
    printf pushd pwd read readarray readonly return set shift shopt source suspend test times trap true type
    typeset ulimit umask unalias unset wait
""".split())
# Commands that run their first operand as a command; the value is how many operands they take first.
WRAPPERS = {"exec": 0, "command": 0, "env": 0, "nohup": 0, "nice": 0, "time": 0, "gosu": 1, "su-exec": 1,
            "setpriv": 0, "chpst": 0, "tini": 0, "dumb-init": 0, "xargs": 0, "timeout": 1, "stdbuf": 0}
# Unary test operators whose operand is a path.
PATH_TESTS = frozenset({"-a", "-b", "-c", "-d", "-e", "-f", "-g", "-h", "-k", "-L", "-p", "-r", "-s", "-S", "-u",
                        "-w", "-x", "-O", "-G", "-N"})
RESERVED = frozenset("if then else elif fi case esac for select while until do done in function time { } ! [[ ]]".split())
SOURCE = frozenset({".", "source"})
# `exec "$@"` runs the container's command, which the closure keeps as the entrypoint.
CONTAINER_COMMAND = frozenset({'"$@"', "$@", '"$*"', "$*"})
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=.*")
_SHELLS = re.compile(rb"#!\s*\S*/(?:env\s+)?(sh|bash|dash|ash|ksh|mksh|busybox\s+sh)\b")


@dataclass(frozen=True)
class Found:
    text: str  # a program name or path, or the unresolvable text as written
    line: int  # 1-based


@dataclass(frozen=True)
class ScriptFacts:
    commands: tuple[Found, ...]  # programs the script can run (names or paths, literal)
    tested: tuple[Found, ...]  # paths it tests for (`[ -f ... ]`)
    sourced: tuple[Found, ...]  # scripts it reads with `.` or `source`
    unresolved: tuple[Found, ...]  # commands behind variables or substitutions


def is_shell_script(head: bytes) -> bool:
    """A file whose #! line names a POSIX-family shell."""
    return bool(_SHELLS.match(head.split(b"\n", 1)[0]))


def scan_script(source: bytes) -> ScriptFacts:
    tree = Parser(BASH).parse(source)
    functions = {_text(n.child_by_field_name("name")) for n in _nodes(tree.root_node, "function_definition")}
    commands, tested, sourced, unresolved = [], [], [], []
    for node in _nodes(tree.root_node, "command", "test_command"):
        line = node.start_point[0] + 1
        if node.type == "test_command":
            tested += [Found(path, line) for path in _tested_paths(list(_flatten_test(node)))]
            continue
        words = [c for c in node.named_children if c.type not in ("variable_assignment", "file_redirect",
                                                                    "herestring_redirect")]
        for program, rest in _programs(words):
            literal = _literal(program)
            if literal is None:
                if _text(program) not in CONTAINER_COMMAND:
                    unresolved.append(Found(_text(program), line))
            elif literal in SOURCE and rest:
                target = _literal(rest[0])
                (sourced if target else unresolved).append(Found(target or _text(rest[0]), line))
            elif literal in ("test", "["):
                tested += [Found(path, line) for path in _tested_paths([_literal(w) or "" for w in rest])]
            elif literal not in BUILTINS and literal not in functions and _names_a_program(literal):
                commands.append(Found(literal, line))
    return ScriptFacts(tuple(commands), tuple(tested), tuple(sourced), tuple(unresolved))


def _names_a_program(word: str) -> bool:
    """Not a reserved word or an option that a construct the grammar could not read left as a command."""
    return word not in RESERVED and not word.startswith("-") and "=" not in word


def _programs(words: list[Node]) -> Iterator[tuple[Node, list[Node]]]:
    """The command's program, then what its wrappers run (`exec gosu app server` -> exec, gosu, server;
    `set -- postgres "$@"` -> postgres)."""
    while words:
        program, rest = words[0], words[1:]
        yield program, rest
        name = _literal(program)
        if name == "set" and rest and _literal(rest[0]) == "--" and len(rest) > 1:
            yield rest[1], rest[2:]
            return
        if name not in WRAPPERS:
            return
        operands = [w for w in rest if not ((_literal(w) or "").startswith("-") or _ASSIGNMENT.fullmatch(_literal(w) or ""))]
        words = operands[WRAPPERS[name]:]


def _tested_paths(words: list[str]) -> list[str]:
    return [operand for operator, operand in zip(words, words[1:]) if operator in PATH_TESTS and operand.startswith("/")]


def _flatten_test(node: Node) -> Iterator[str]:
    """The words of a `[ ... ]` / `[[ ... ]]` expression in order, non-literal ones as ""."""
    for child in node.named_children:
        if child.type in ("unary_expression", "binary_expression", "parenthesized_expression", "negation_expression"):
            yield from _flatten_test(child)
        elif child.type == "test_operator":
            yield _text(child)
        else:
            yield _literal(child) or ""


def _literal(node: Node) -> str | None:
    """The word's value when it has no expansion in it ('"gzip"' -> gzip); None otherwise."""
    if node.type == "command_name":
        return _literal(node.named_children[0]) if node.named_children else None
    if node.type == "word":
        return _text(node)
    if node.type == "raw_string":
        return _text(node)[1:-1]
    if node.type == "string" and all(c.type == "string_content" for c in node.named_children):
        return _text(node)[1:-1]
    if node.type == "concatenation" and all(c.type in ("word", "raw_string", "string") for c in node.named_children):
        parts = [_literal(c) for c in node.named_children]
        return None if None in parts else "".join(parts)
    return None


def _nodes(root: Node, *types: str) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type in types:
            yield node
        stack.extend(reversed(node.named_children))


def _text(node: Node | None) -> str:
    return node.text.decode(errors="replace") if node is not None and node.text is not None else ""
