"""Node type registry: a dict and a decorator, filled from entry points.

`graphflow` never imports `nodes`: node packages (ours and third parties')
declare `[project.entry-points."graphflow.nodes"]` and their modules call
`@register` on import. `Registry` is a plain object so tests can build an
isolated one; `registry` is the process-wide default that the CLI uses.
"""
from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points
from typing import TypeVar

from .errors import UserError
from .node import Node

ENTRY_POINT_GROUP = "graphflow.nodes"
N = TypeVar("N", bound=type[Node])


class Registry:
    """Node types by name. `plugins=False` makes an isolated registry that never loads the
    entry-point group or `GRAPHFLOW_PLUGINS`: it holds only what is registered on it (tests,
    benchmarks, embedding a few node types in an application)."""

    def __init__(self, *, plugins: bool = True) -> None:
        self.types: dict[str, type[Node]] = {}
        self._plugins_loaded = not plugins

    def register(self, cls: N) -> N:
        if not cls.name:
            raise TypeError(f"{cls.__name__} has no `name`")
        existing = self.types.get(cls.name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"node type '{cls.name}' registered twice ({existing.__qualname__}, {cls.__qualname__})")
        cls.input_ports()  # fail at import time on a bad signature
        cls.output_ports()
        self.types[cls.name] = cls
        return cls

    def include(self, other: Registry) -> None:
        """Register every node type of `other` here too (e.g. a test package's toy nodes in the
        process-wide registry, for CLI runs that name them through GRAPHFLOW_PLUGINS)."""
        for cls in other.types.values():
            self.register(cls)

    def load_plugins(self) -> None:
        """Import every module named in the `graphflow.nodes` entry-point group."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
        # Extra node modules for a session (like ComfyUI's custom nodes folder), comma-separated
        # importable module names; only modules the user names are imported.
        for module in filter(None, os.environ.get("GRAPHFLOW_PLUGINS", "").split(",")):
            try:
                import_module(module.strip())
            except ImportError as exc:
                raise UserError(f"cannot import node plugin module '{module}': {exc}",
                                param="GRAPHFLOW_PLUGINS", hint="check the module name and PYTHONPATH") from exc

    def get(self, name: str) -> type[Node]:
        self.load_plugins()
        if name not in self.types:
            raise UserError(f"unknown node type '{name}'", hint="`graphflow nodes` lists the registered types")
        return self.types[name]

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self.types

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self.types)


registry = Registry()


def register(cls: N) -> N:
    """Class decorator: add a node type to the default registry."""
    return registry.register(cls)
