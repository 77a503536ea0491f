"""The code behind each built-in node type, fingerprinted, and the lock that ties it to the node's version.

A node's cache key holds its type and `version`, not its code (graphflow/keys.py), so a change of
behaviour must come with a version bump. The code a node type runs is its module and every module of
`nodes/` that module imports, directly or not (read from the source, `helpers.imports`); a module that
resolves implementations by name through a registry of `nodes.components` also runs the modules that
register the built-in ones (`REGISTRY_IMPLEMENTATIONS`). Each module is fingerprinted from its syntax
tree without docstrings, so comments, docstrings and layout do not count; data files beside the code
(the report page's static files) count by their bytes.

`tests/engine/node_code.lock` records, per node type, its version and the fingerprint of that code;
`tests/engine/test_node_code_versions.py` fails when a fingerprint moved and the version did not.

    python -m tests.helpers.node_code            # what changed since the lock, and what to do
    python -m tests.helpers.node_code --update   # record the lock after bumping the changed nodes' versions
    python -m tests.helpers.node_code --update --same-outputs  # record a refactor that keeps every output
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from .imports import import_graph

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / "nodes"
LOCK = ROOT / "tests" / "engine" / "node_code.lock"
UPDATE = "python -m tests.helpers.node_code --update"
# Registries of `nodes.components` and the module that imports every built-in implementation of each.
REGISTRY_IMPLEMENTATIONS = {"nodes.components.priors": "nodes.priors",
                            "nodes.components.raster": "nodes.render.raster"}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _module_path(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def module_fingerprint(module: str) -> str:
    """Digest of a module's code (syntax tree, docstrings left out) and of the data files in its folders."""
    path = _module_path(module)
    digest = hashlib.sha256(ast.dump(_without_docstrings(ast.parse(path.read_text()))).encode())
    if path.name == "__init__.py":  # a package's data: files in its folders that are not packages (static/)
        for data in sorted(p for p in path.parent.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                           and not (p.parent / "__init__.py").exists()):
            digest.update(data.relative_to(ROOT).as_posix().encode() + b"\0" + data.read_bytes())
    return digest.hexdigest()[:16]


def code_closure(graph: nx.DiGraph, module: str) -> list[str]:
    """`module` and every module of nodes/ it runs: imports, transitively, and registered implementations."""
    closure: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in closure:
            continue
        closure.add(current)
        todo += graph.successors(current)
        package = current.rsplit(".", 1)[0]
        if package in graph and package not in closure and package != "nodes":  # its package's data files
            todo.append(package)
        if current in REGISTRY_IMPLEMENTATIONS:
            todo.append(REGISTRY_IMPLEMENTATIONS[current])
    return sorted(closure)


@dataclass
class NodeCode:
    """One node type: its version, the modules it runs and their combined fingerprint."""

    version: int
    modules: list[str]
    fingerprint: str


def current_node_code() -> tuple[dict[str, NodeCode], dict[str, str]]:
    """(node type -> its code now, module -> its fingerprint now) for every built-in node type."""
    from graphflow.registry import registry

    importlib.import_module("nodes.catalog")
    graph = import_graph(NODES, "nodes")
    modules: dict[str, str] = {}
    nodes: dict[str, NodeCode] = {}
    for name, cls in sorted(registry.types.items()):
        if not cls.__module__.startswith("nodes."):
            continue  # a test's or a plugin's node type
        closure = code_closure(graph, cls.__module__)
        for module in closure:
            modules.setdefault(module, module_fingerprint(module))
        combined = hashlib.sha256("".join(f"{m}={modules[m]}\n" for m in closure).encode()).hexdigest()[:16]
        nodes[name] = NodeCode(int(cls.version), closure, combined)
    return nodes, modules


def read_lock(path: Path = LOCK) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"nodes": {}, "modules": {}}


def problems(lock: dict, nodes: dict[str, NodeCode], modules: dict[str, str]) -> list[str]:
    """What differs between the lock and the code, one line per node type, saying what to do."""
    found = []
    for name, code in nodes.items():
        locked = lock["nodes"].get(name)
        if locked is None:
            found.append(f"{name}: a new node type; record it with `{UPDATE}`")
            continue
        changed = [m for m in code.modules if lock["modules"].get(m) != modules[m]]
        if locked["fingerprint"] != code.fingerprint and locked["version"] == code.version:
            found.append(f"{name}: its code changed ({', '.join(changed) or 'the modules it imports'}) but its "
                         f"version is still {code.version}: bump `version` if outputs can change, then `{UPDATE}` "
                         f"(`{UPDATE} --same-outputs` for a refactor that keeps every output byte-identical)")
        elif locked["version"] != code.version or locked["fingerprint"] != code.fingerprint:
            found.append(f"{name}: version {locked['version']} -> {code.version}; record it with `{UPDATE}`")
    found += [f"{name}: no longer a node type; drop it with `{UPDATE}`" for name in lock["nodes"] if name not in nodes]
    return found


def write_lock(nodes: dict[str, NodeCode], modules: dict[str, str], path: Path = LOCK) -> None:
    lock = {"nodes": {n: {"version": c.version, "fingerprint": c.fingerprint} for n, c in sorted(nodes.items())},
            "modules": dict(sorted(modules.items()))}
    path.write_text(json.dumps(lock, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.node_code", description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="record the versions and code fingerprints")
    parser.add_argument("--same-outputs", action="store_true",
                        help="with --update: the changed code keeps every output byte-identical (no bump needed)")
    args = parser.parse_args(argv)
    nodes, modules = current_node_code()
    lock = read_lock()
    found = problems(lock, nodes, modules)
    unbumped = [line for line in found if "but its version is still" in line]
    if args.update and (not unbumped or args.same_outputs):
        write_lock(nodes, modules)
        print(f"recorded {len(nodes)} node types in {LOCK.relative_to(ROOT)}")
        return 0
    print("\n".join(found) if found else "the lock matches the code")
    return 2 if args.update or found else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
