"""What a Python module's source imports, read with the `ast` module, never run: every `import`/`from ...
import` at any depth (inside functions, `try`/`except ImportError`, `if TYPE_CHECKING`), and
`importlib.import_module`/`__import__` calls with a literal name. A call with a name that is not a literal is
reported as dynamic: its caller's whole package is kept instead (encodings' codec search, a plugin loader).

This is the part whose findings the scan cache keeps (its key digests this file), and all that its second
process imports: nothing here reads the image.
"""
from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field


IMPORTERS = frozenset({"import_module", "__import__"})  # importlib.import_module, __import__
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_WORD = re.compile(r"[A-Za-z][\w.-]{1,24}")
MODULE_ATTRIBUTES = frozenset({"__doc__", "__name__", "__spec__", "__loader__", "__package__", "__dict__"})


@dataclass(frozen=True)
class ImportName:
    """`level` 0: absolute; n: relative to the n-th package above the importing module (`from .. import x`).
    `members`: the names a `from` import takes, each of which may be a submodule."""

    name: str
    line: int
    level: int = 0
    members: tuple[str, ...] = ()
    # An import in an `except ImportError:` handler runs only when an import of its `try:` failed: these.
    fallback_for: tuple[ImportName, ...] = ()


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
    return _RunTimeScan(main).imports(tree)


def _statement_imports(node: ast.Import | ast.ImportFrom, fallback_for: tuple[ImportName, ...] = ()) -> list[ImportName]:
    if isinstance(node, ast.Import):
        return [ImportName(alias.name, node.lineno, fallback_for=fallback_for) for alias in node.names]
    members = tuple(alias.name for alias in node.names if alias.name != "*")
    return [ImportName(node.module or "", node.lineno, node.level, members, fallback_for)]


@dataclass
class _Found:
    """What the code of one top-level statement imports, in the order the scan meets it."""

    names: list[ImportName] = field(default_factory=list)
    dynamic_lines: list[int] = field(default_factory=list)
    words: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class _LeaveHandler:
    """Put on the scan's stack below an `except` handler's children: past it, the outer handler's
    fallbacks apply again."""

    fallback_for: tuple[ImportName, ...]


# Fields that never hold a node the scan looks into: names, numbers and flags, and expression contexts and
# operators (nodes that name nothing).
_NOT_CHILDREN = frozenset({"ctx", "op", "ops", "id", "attr", "name", "asname", "module", "level", "arg", "kind",
                           "type_comment", "is_async", "simple", "conversion", "tag"})
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(kind: type) -> tuple[str, ...]:
    fields = _CHILD_FIELDS.get(kind)
    if fields is None:
        fields = _CHILD_FIELDS[kind] = tuple(f for f in getattr(kind, "_fields", ()) if f not in _NOT_CHILDREN)
    return fields


class _RunTimeScan:
    """One walk over a module's code that can run, gathering its imports; code an imported module never
    runs is left out: `if __name__ == "__main__":` and `if TYPE_CHECKING:` blocks (their `else:` branches do
    run), branches for other platforms, and private module-level functions nothing outside those blocks
    names (difflib's `_test()`, called only when the module runs as a program).

    A private function is known to be unused only once the whole module is walked, so each top-level
    statement's finds are kept apart and those of unused functions dropped at the end. Each statement is
    walked depth first, children pushed in field order and popped last first (ast.iter_child_nodes' order
    on a stack): the finds come in the order every earlier version of this scan gave them."""

    def __init__(self, main: bool):
        self.main = main
        self.named: set[str] = set()  # every name, attribute and string the code that can run mentions
        self.fallbacks: dict[ast.ExceptHandler, tuple[ImportName, ...]] = {}

    def imports(self, tree: ast.Module) -> ModuleImports:
        private = {node.name: node for node in tree.body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_")
                   and not node.name.startswith("__")}
        found = [(statement, self._walk(statement)) for statement in reversed(tree.body)]
        unused = {node for name, node in private.items() if name not in self.named}
        kept = [part for statement, part in found if statement not in unused]
        return ModuleImports(tuple(name for part in kept for name in part.names),
                             tuple(line for part in kept for line in part.dynamic_lines),
                             tuple(word for part in kept for word in part.words))

    def _walk(self, top: ast.stmt) -> _Found:
        found = _Found()
        named, main = self.named, self.main
        fallback_for: tuple[ImportName, ...] = ()  # the imports an enclosing `except ImportError:` stands in for
        stack: list = [top]
        while stack:
            node = stack.pop()
            kind = node.__class__
            if kind is ast.Name:
                named.add(node.id)
            elif kind is ast.Constant:
                if node.value.__class__ is str:
                    named.add(node.value)  # __all__, getattr(module, "_name")
                    if _WORD.fullmatch(node.value):
                        found.words.append((node.value, node.lineno))
            elif kind is ast.Attribute:
                named.add(node.attr)
                stack.append(node.value)
            elif kind is _LeaveHandler:
                fallback_for = node.fallback_for
            elif kind is ast.If and (truth := _known_truth(node.test, main)) is not None:
                stack.extend(node.body if truth else node.orelse)
            elif kind is ast.Import or kind is ast.ImportFrom:
                found.names.extend(_statement_imports(node, fallback_for))
            else:
                if kind is ast.Call:
                    self._import_call(node, found)
                elif kind is ast.ExceptHandler:
                    stack.append(_LeaveHandler(fallback_for))
                    fallback_for = self.fallbacks.get(node, ())
                elif kind is ast.Try:
                    self._note_fallbacks(node)
                for name in _child_fields(kind):
                    value = getattr(node, name)
                    if value.__class__ is list:
                        stack.extend(value)  # None (a dict's `**` key) and strings (`global` names) are skipped
                    elif value is not None:
                        stack.append(value)
        return found

    @staticmethod
    def _import_call(node: ast.Call, found: _Found) -> None:
        """importlib.import_module("name") and __import__("name")."""
        if _called_name(node.func) not in IMPORTERS or not node.args:
            return
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if _IDENTIFIER.fullmatch(first.value):
                found.names.append(ImportName(first.value, node.lineno))
        else:
            found.dynamic_lines.append(node.lineno)  # a relative literal (".x", package=...) needs the package too

    def _note_fallbacks(self, node: ast.Try) -> None:
        """Each `except ImportError:` (or ModuleNotFoundError) handler of a `try:` that imports, with the
        imports of that `try:` body."""
        handlers = [handler for handler in node.handlers if _catches_import_error(handler.type)]
        if handlers:
            tried = tuple(name for statement in node.body for inner in ast.walk(statement)
                          if isinstance(inner, (ast.Import, ast.ImportFrom)) for name in _statement_imports(inner))
            if tried:
                self.fallbacks.update(dict.fromkeys(handlers, tried))


def _catches_import_error(caught: ast.expr | None) -> bool:
    """Only a handler for ImportError alone: a broader one (`except Exception:`) also runs when the
    imported module fails in any other way."""
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return caught is not None and all(_is_name(n, "ImportError") or _is_name(n, "ModuleNotFoundError") for n in names)


def _known_truth(test: ast.expr, main: bool) -> bool | None:
    """The value of an `if` test known without running: TYPE_CHECKING is false, `__name__ == "__main__"` is
    false in an imported module, and the platform is Linux (`sys.platform == "win32"`, `os.name == "nt"`,
    `sys.platform.startswith("darwin")`); None when it depends on anything else."""
    if isinstance(test, (ast.Name, ast.Attribute)):
        return False if (test.id if isinstance(test, ast.Name) else test.attr) == "TYPE_CHECKING" else None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _known_truth(test.operand, main)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [_known_truth(value, main) for value in test.values]
        decisive = isinstance(test.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(test, ast.Compare) and len(test.comparators) == 1:
        if _is_name(test.left, "__name__") and _constant(test.comparators[0]) == "__main__":
            return None if main or not isinstance(test.ops[0], (ast.Eq, ast.NotEq)) else isinstance(test.ops[0], ast.NotEq)
        return _platform_comparison(test)
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "startswith"
            and len(test.args) == 1 and not test.keywords):
        value, prefix = _platform_value(test.func.value), _constant(test.args[0])
        prefixes = (prefix,) if isinstance(prefix, str) else prefix
        if value is not None and isinstance(prefixes, tuple) and all(isinstance(p, str) for p in prefixes):
            return value.startswith(prefixes)
    return None


# What a container on Linux sees: sys.platform and os.name.
_PLATFORM = {("sys", "platform"): "linux", ("os", "name"): "posix"}


def _platform_comparison(test: ast.Compare) -> bool | None:
    value, other, op = _platform_value(test.left), _constant(test.comparators[0]), test.ops[0]
    if value is None:
        return None
    if isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(other, str):
        return (value == other) == isinstance(op, ast.Eq)
    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(other, tuple) and all(isinstance(o, str) for o in other):
        return (value in other) == isinstance(op, ast.In)
    return None


def _platform_value(node: ast.expr) -> str | None:
    """"linux" for `sys.platform` (also `_sys.platform`), "posix" for `os.name`; None for anything else."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return _PLATFORM.get((node.value.id.lstrip("_"), node.attr))
    return None


def _constant(node: ast.expr) -> object:
    """A literal's value (a tuple of literals too); None for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(isinstance(e, ast.Constant) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""
