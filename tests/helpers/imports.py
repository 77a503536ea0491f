"""The module import graph of a package, read from its source (function-level imports included),
for tests of the layout: no import cycles, the engine never importing the node layer, the node
packages on their floors, no import hidden in a function body."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx


def module_name(root: Path, path: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path, package: str) -> nx.DiGraph:
    """Modules of `package` (its folder `root`) and which of them each one imports."""
    files = {module_name(root, p, package): p for p in root.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                # `from . import api` names a module; `from .cache import Entry` names the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in files and target != name:
                    graph.add_edge(name, target)
    return graph


def function_imports(root: Path, package: str) -> list[tuple[str, str, int]]:
    """(module, imported module, line) for every import inside a function body (relative ones resolved)."""
    files = {module_name(root, p, package): p for p in root.rglob("*.py")}
    found = []
    for name, path in sorted(files.items()):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(name, a.name, node.lineno) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((name, _resolve(name, path.name == "__init__.py", node), node.lineno))
    return sorted(set(found))


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    """Every strongly connected group of modules that import each other, sorted."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def imports_of(root: Path, package: str, prefix: str) -> list[tuple[str, str]]:
    """(module, imported name) for every import of a name starting with `prefix`."""
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [(module_name(root, path, package), n) for n in names if n == prefix or n.startswith(prefix + ".")]
    return found
