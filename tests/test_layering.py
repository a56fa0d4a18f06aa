"""The layers, read from the imports (no engine, nothing imported): only the adapters touch the Docker SDK and
cffi, the stages are handed the engine and the tracer, no stage imports a renderer, probes import nothing of
slim, and no import cycle exists, between modules or between packages."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("slim", "probes")
ENGINE_ADAPTER = "slim.adapters.docker_engine"
KERNEL_BINDING = "slim.adapters.fanotify"
TRACER_ADAPTER = "slim.adapters.fanotify_tracer"
COMPOSITION_ROOT = "slim.cli"  # the one place that builds the adapters and hands them to the pipeline


def _module_files() -> dict[str, Path]:
    modules = {}
    for top in TOP_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module `module` imports, anywhere in it (functions too), as a dotted name."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in MODULES else base


IMPORTS = {module: frozenset(_imported(module, path)) for module, path in MODULES.items()}


def importers_of(top_level: str) -> set[str]:
    return {m for m, imported in IMPORTS.items() if any(i.split(".")[0] == top_level for i in imported)}


def importers_of_module(target: str) -> set[str]:
    return {m for m, imported in IMPORTS.items() if target in imported and m != target}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, or with a self loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _internal_graph() -> dict[str, set[str]]:
    return {m: {i for i in imported if i in MODULES and i != m} for m, imported in IMPORTS.items()}


def package_of(module: str) -> str:
    """The unit a package cycle is about: a subpackage of slim (slim.build, slim.rules, ...), probes, or a
    module directly in slim (slim.model, slim.engine, ...)."""
    parts = module.split(".")
    if parts[0] != "slim":
        return parts[0]
    if len(parts) > 2 or _is_package(module) and module != "slim":
        return ".".join(parts[:2])
    return module


def test_the_module_table_sees_the_whole_tree():
    assert {"slim.pipeline", "slim.build.closure", ENGINE_ADAPTER, KERNEL_BINDING, "probes.base"} <= set(MODULES)


def test_only_the_engine_adapter_imports_docker():
    assert importers_of("docker") == {ENGINE_ADAPTER}


def test_only_the_fanotify_binding_imports_cffi():
    assert importers_of("cffi") == {KERNEL_BINDING}


def test_the_adapters_are_built_in_one_place_and_handed_to_the_stages():
    assert importers_of_module(ENGINE_ADAPTER) == {COMPOSITION_ROOT}
    assert importers_of_module(TRACER_ADAPTER) == {COMPOSITION_ROOT}
    assert importers_of_module(KERNEL_BINDING) == {TRACER_ADAPTER}


def test_no_stage_imports_a_renderer():
    renderers = {m for m in MODULES if m.startswith("slim.reporting.render_")}
    assert renderers, "the renderers moved: update this test"
    importers = set().union(*(importers_of_module(r) for r in renderers))
    assert importers - renderers == {COMPOSITION_ROOT}


def test_probes_depend_only_on_what_they_own():
    assert {m for m in importers_of("slim") if m.startswith("probes")} == set()


def test_no_import_cycle_between_modules():
    assert _cycles(_internal_graph()) == []


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, imported in _internal_graph().items():
        graph.setdefault(package_of(module), set()).update(package_of(i) for i in imported)
    for package, imported in graph.items():
        imported.discard(package)
    assert _cycles(graph) == []
