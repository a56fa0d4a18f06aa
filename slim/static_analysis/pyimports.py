"""Python's static import graph: which modules a module can import (pyscan.py reads that from its source),
and which files those are, resolved as Python's path finder does over the image's files: packages (a
directory with `__init__.py`), namespace portions, modules, extension modules
(`name.cpython-311-x86_64-linux-gnu.so`, `name.abi3.so`, `name.so`).
"""
from __future__ import annotations

import ast
import re
from pathlib import PurePosixPath

from slim.model import EntryKind
from slim.image.rootfs import RootFS
from .pyscan import MODULE_ATTRIBUTES, ImportName


class ModuleFinder:
    """Python's path finder over the image: module name -> the files importing it reads. The image does not
    change while a build reads it, so every answer is memoised (one finder serves every closure round)."""

    def __init__(self, rootfs: RootFS, search_path: tuple[PurePosixPath, ...],
                 hidden: frozenset[PurePosixPath] = frozenset()):
        self.rootfs = rootfs
        self.search_path = search_path
        self.hidden = hidden  # modules and packages never taken (the standard library's test suite)
        self._found: dict[tuple[PurePosixPath, tuple[str, ...]], tuple[PurePosixPath, ...] | None] = {}
        self._extensions: dict[PurePosixPath, dict[str, PurePosixPath]] = {}

    def find(self, name: str) -> tuple[PurePosixPath, ...] | None:
        """Every file importing `name` runs (each package's __init__.py on the way, then the module);
        None when no directory of the search path has it (a built-in module, or an optional one)."""
        parts = name.split(".")
        for directory in self.search_path:
            found = self.find_below(directory, parts)
            if found is not None:
                return found
        return None

    def find_below(self, directory: PurePosixPath, parts: list[str]) -> tuple[PurePosixPath, ...] | None:
        key = (directory, tuple(parts))
        if key not in self._found:
            self._found[key] = self._find_below(directory, parts)
        return self._found[key]

    def _find_below(self, directory: PurePosixPath, parts: list[str]) -> tuple[PurePosixPath, ...] | None:
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
        return tuple(files)  # shared by every import of the name: never to be changed in place

    def module_file(self, directory: PurePosixPath, name: str) -> PurePosixPath | None:
        source = directory / f"{name}.py"
        if self._is(source, EntryKind.FILE):
            return source
        return self._extension_modules(directory).get(name)

    def _extension_modules(self, directory: PurePosixPath) -> dict[str, PurePosixPath]:
        """The directory's extension modules by each name they can be imported as: `name.<anything>.so`
        is `name`'s (`_ssl.cpython-311-x86_64-linux-gnu.so`, `x.abi3.so`), the first in the directory's order."""
        modules = self._extensions.get(directory)
        if modules is None:
            modules = self._extensions[directory] = {}
            for child in self.rootfs.children(directory):
                if child.name.endswith(".so") and self._is(child, EntryKind.FILE):
                    for dot in (i for i, c in enumerate(child.name) if c == "."):
                        modules.setdefault(child.name[:dot], child)
        return modules

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


def imported_files(finder: ModuleFinder, module: PurePosixPath, wanted: ImportName) -> tuple[PurePosixPath, ...] | None:
    """The files an import statement of `module` reads (None: not found), trying each `from` member as a
    submodule too (`from email import mime` imports email.mime)."""
    found, submodule = _importer(finder, module, wanted)
    if found is None:
        return None
    for member in wanted.members:
        found = found + (submodule(member) or ())
    return found


def import_succeeds(finder: ModuleFinder, module: PurePosixPath, wanted: ImportName) -> bool:
    """Whether the import statement surely works in the image: the module is there, and each `from` member
    is a submodule or a name the module defines (read from its source; searched for in an extension
    module's binary). False when unsure: a module that defines names by `*` or `__getattr__`."""
    found, submodule = _importer(finder, module, wanted)
    if found is None:
        return False
    return all(submodule(member) is not None or (found and _defines(finder.rootfs, found[-1], member))
               for member in wanted.members)


def _importer(finder: ModuleFinder, module: PurePosixPath, wanted: ImportName):  # noqa: ANN202
    """The files of the statement's module, and a function finding one of its members as a submodule."""
    if wanted.level:
        base = module.parents[wanted.level - 1]
        parts = wanted.name.split(".") if wanted.name else []
        found = finder.find_below(base, parts) if parts else ()
        return found, lambda member: finder.find_below(base, parts + [member])
    return finder.find(wanted.name), lambda member: finder.find(f"{wanted.name}.{member}")


def _defines(rootfs: RootFS, path: PurePosixPath, name: str) -> bool:
    """Whether the module in `path` surely has the attribute `name`."""
    if name in MODULE_ATTRIBUTES:
        return True
    data = rootfs.read(path)
    if path.suffix == ".so":
        return re.search(rb"(?<![\w.])" + re.escape(name.encode()) + rb"(?![\w.])", data) is not None
    return name in _defined_names(data)


def _defined_names(source: bytes) -> frozenset[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:  # module level, through if/try/with blocks, not into functions and classes
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return frozenset()
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ExceptHandler)):
            stack.extend(ast.iter_child_nodes(node))
    return frozenset() if "__getattr__" in names else frozenset(names)


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
