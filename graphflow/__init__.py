"""graphflow: typed node graphs with content-addressed caching.

The engine knows graphs, nodes, types, caches and executors; nothing about 3D.
"""
from __future__ import annotations

from .errors import GraphInvalid, Problem, UserError
from .keyed import Keyed
from .node import Context, NoParams, Node, Resources
from .progress import Event
from .registry import Registry, register, registry
from .values import FileBlob, TensorData, value_type

__all__ = [
    "Context", "Event", "FileBlob", "GraphInvalid", "Keyed", "NoParams", "Node", "Problem", "Registry",
    "Resources", "TensorData", "UserError", "register", "registry", "value_type",
]
