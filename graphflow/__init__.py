"""graphflow: typed node graphs with content-addressed caching.

The engine knows graphs, nodes, types, caches and executors; nothing about 3D.
"""
from __future__ import annotations

from .api import open_cache, run
from .errors import ErrorInfo, GraphInvalid, Problem, RunFailed, UserError
from .graph import Graph, InputRef, Link
from .keyed import Keyed
from .node import Context, NoParams, Node, Resources
from .progress import Event
from .registry import Registry, register, registry
from .report import RunReport, RunResult
from .values import FileBlob, FileTree, TensorData, value_type

__all__ = [
    "Context", "ErrorInfo", "Event", "FileBlob", "FileTree", "Graph", "GraphInvalid", "InputRef", "Keyed", "Link", "NoParams",
    "Node", "Problem", "Registry", "Resources", "RunFailed", "RunReport", "RunResult", "TensorData", "UserError",
    "open_cache", "register", "registry", "run", "value_type",
]
