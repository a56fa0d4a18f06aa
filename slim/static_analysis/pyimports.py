"""Python's static import graph: which modules a module can import, and which files those are.

Read with the `ast` module, never run: every `import`/`from ... import` at any depth (inside functions,
`try`/`except ImportError`, `if TYPE_CHECKING`), and `importlib.import_module`/`__import__` calls with a
literal name. A call with a name that is not a literal is reported as dynamic: its caller's whole package is
kept instead (encodings' codec search, a plugin loader). Names are resolved as Python's path finder does,
over the image's files: packages (a directory with `__init__.py`), namespace portions, modules, extension
modules (`name.cpython-311-x86_64-linux-gnu.so`, `name.abi3.so`, `name.so`).
"""
from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.model import EntryKind
from slim.image.rootfs import RootFS

IMPORTERS = frozenset({"import_module", "__import__"})  # importlib.import_module, __import__
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_WORD = re.compile(r"[A-Za-z][\w.-]{1,24}")


@dataclass(frozen=True)
class ImportName:
    """`level` 0: absolute; n: relative to the n-th package above the importing module (`from .. import x`).
    `members`: the names a `from` import takes, each of which may be a submodule."""

    name: str
    line: int
    level: int = 0
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleImports:
    names: tuple[ImportName, ...]
    dynamic_lines: tuple[int, ...]  # import calls whose name is not a literal
    words: tuple[tuple[str, int], ...] = ()  # short string literals with their lines: codec names among them


def scan_imports(source: bytes, main: bool = False) -> ModuleImports | None:
    """The imports of a module's source; None when it is not Python 3 (a Python 2 file in dist-packages).
    `main`: the source runs as the program (its `if __name__ == "__main__":` block runs too)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old code
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    names: list[ImportName] = []
    dynamic: list[int] = []
    words: list[tuple[str, int]] = []
    for node in _run_time_nodes(tree, main):
        if isinstance(node, ast.Import):
            names.extend(ImportName(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            members = tuple(alias.name for alias in node.names if alias.name != "*")
            names.append(ImportName(node.module or "", node.lineno, node.level, members))
        elif isinstance(node, ast.Call) and _called_name(node.func) in IMPORTERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and _IDENTIFIER.fullmatch(first.value):
                names.append(ImportName(first.value, node.lineno))
            elif not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                dynamic.append(node.lineno)  # a relative literal (".x", package=...) needs the package too
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _WORD.fullmatch(node.value):
            words.append((node.value, node.lineno))
    return ModuleImports(tuple(names), tuple(dynamic), tuple(words))


def _run_time_nodes(tree: ast.Module, main: bool) -> Iterator[ast.AST]:
    """Every node, except code an imported module never runs: `if __name__ == "__main__":` and
    `if TYPE_CHECKING:` blocks (their `else:` branches do run), and private module-level functions nothing
    outside those blocks names (difflib's `_test()`, called only when the module runs as a program)."""
    dead = _unused_private_functions(tree, main)
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _never_run(node.test, main):
            stack.extend(node.orelse)
        elif node not in dead:
            stack.extend(ast.iter_child_nodes(node))


def _unused_private_functions(tree: ast.Module, main: bool) -> set[ast.AST]:
    private = {node.name: node for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_")
               and not node.name.startswith("__")}
    if not private:
        return set()
    named: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            named.add(node.id)
        elif isinstance(node, ast.Attribute):
            named.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.add(node.value)  # __all__, getattr(module, "_name")
        if isinstance(node, ast.If) and _never_run(node.test, main):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))
    return {node for name, node in private.items() if name not in named}


def _never_run(test: ast.expr, main: bool) -> bool:
    if isinstance(test, (ast.Name, ast.Attribute)):
        return (test.id if isinstance(test, ast.Name) else test.attr) == "TYPE_CHECKING"
    return not main and (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


class ModuleFinder:
    """Python's path finder over the image: module name -> the files importing it reads."""

    def __init__(self, rootfs: RootFS, search_path: tuple[PurePosixPath, ...],
                 hidden: frozenset[PurePosixPath] = frozenset()):
        self.rootfs = rootfs
        self.search_path = search_path
        self.hidden = hidden  # modules and packages never taken (the standard library's test suite)

    def find(self, name: str) -> list[PurePosixPath] | None:
        """Every file importing `name` runs (each package's __init__.py on the way, then the module);
        None when no directory of the search path has it (a built-in module, or an optional one)."""
        for directory in self.search_path:
            found = self.find_below(directory, name.split("."))
            if found is not None:
                return found
        return None

    def find_below(self, directory: PurePosixPath, parts: list[str]) -> list[PurePosixPath] | None:
        files: list[PurePosixPath] = []
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            package = directory / part
            if self._is(package, EntryKind.DIR):
                init = package / "__init__.py"
                if self._is(init, EntryKind.FILE):
                    files.append(init)
                directory = package
                continue
            module = self.module_file(directory, part) if last else None
            if module is None:
                return None
            files.append(module)
        return files

    def module_file(self, directory: PurePosixPath, name: str) -> PurePosixPath | None:
        source = directory / f"{name}.py"
        if self._is(source, EntryKind.FILE):
            return source
        for child in self.rootfs.children(directory):
            if child.name.startswith(f"{name}.") and child.name.endswith(".so") and self._is(child, EntryKind.FILE):
                return child
        return None

    def package_of(self, module: PurePosixPath) -> PurePosixPath | None:
        """The outermost package (directory with __init__.py) holding `module`, below its search path entry."""
        top = max((d for d in self.search_path if d in module.parents), key=lambda d: len(d.parts), default=None)
        if top is None or module.parent == top:
            return None
        outer = top / module.relative_to(top).parts[0]
        return outer if self._is(outer / "__init__.py", EntryKind.FILE) else None

    def _is(self, path: PurePosixPath, kind: EntryKind) -> bool:
        if path in self.hidden:
            return False
        entry = self.rootfs.get(path)
        return entry is not None and entry.kind is kind


def imported_files(finder: ModuleFinder, module: PurePosixPath, wanted: ImportName) -> list[PurePosixPath] | None:
    """The files an import statement of `module` reads (None: not found), trying each `from` member as a
    submodule too (`from email import mime` imports email.mime)."""
    if wanted.level:
        base = module.parents[wanted.level - 1]
        parts = wanted.name.split(".") if wanted.name else []
        found = finder.find_below(base, parts) if parts else []
        lookup = lambda member: finder.find_below(base, parts + [member])  # noqa: E731
    else:
        found = finder.find(wanted.name)
        lookup = lambda member: finder.find(f"{wanted.name}.{member}")  # noqa: E731
    if found is None:
        return None
    for member in wanted.members:
        found = found + (lookup(member) or [])
    return found


def codec_aliases(source: bytes) -> dict[str, str]:
    """encodings/aliases.py's table (alias -> codec module name), read without running it."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def codec_module(aliases: dict[str, str], name: str) -> str:
    """The encodings module codecs.lookup(name) imports, normalised as encodings.search_function does."""
    normal = "_".join(re.split(r"[^\w.]+", name.lower())).replace(".", "_").strip("_")
    return aliases.get(normal, normal)
