"""A named set of factories, threestudio's way: `@REGISTRY.register("name")` on the factory.

A registry is an explicit object built once at import of a neutral module; an implementation
registers itself when the module that defines it is imported. A name not registered yet loads the
node plugins first (the `graphflow.nodes` entry points: `nodes.catalog` imports `nodes.priors` and
`nodes.render.raster`, which import every built-in implementation), so a node package resolves a
sibling's implementation (distill: the `stable_diffusion` prior of sd) without importing it, in the
driver and in a Ray worker alike. Resolving an unknown name is then a `UserError` that lists the
known ones, so a typo in a graph says what would have worked.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from graphflow import UserError
from graphflow.registry import registry as node_registry

Factory = TypeVar("Factory", bound=Callable[..., object])


class ComponentRegistry(Generic[Factory]):
    """Factories by name for one kind of component (`kind` and `param` word the errors)."""

    def __init__(self, kind: str, param: str) -> None:
        self.kind = kind
        self.param = param
        self._factories: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        """Decorator: file `factory` under `name`; a second factory for a taken name is a bug."""
        def add(factory: Factory) -> Factory:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = factory
            return factory
        return add

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def get(self, name: str) -> Factory:
        """The factory called `name`; an unknown name is a UserError listing the known names."""
        if name not in self._factories:
            node_registry.load_plugins()  # the modules that register built-in and plugin implementations
        if name not in self._factories:
            raise UserError(f"unknown {self.kind} {name!r}", param=self.param,
                            hint=f"use one of {', '.join(self.names())}")
        return self._factories[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories


__all__ = ["ComponentRegistry"]
