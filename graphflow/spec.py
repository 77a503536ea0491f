"""What a graph is made of, as plain data: node specs, edge sources, graph inputs.

`Graph` (graph.py) adds editing, validation and the registry on top; `yamlio`
reads and writes these records. Both import this module and neither imports
the other's internals, so the YAML format and the graph model stay apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .node import CachePolicy

INPUT_PREFIX = "$inputs."
PARAMS_PREFIX = "$params."

ParamPath = tuple[str | int, ...]  # where a value sits inside a node's params: keys and list indices


@dataclass(frozen=True)
class Link:
    """An edge's source: output `output` of node `node` (None: its only output)."""

    node: str
    output: str | None = None

    def __str__(self) -> str:
        return f"{self.node}.{self.output}" if self.output else self.node


@dataclass(frozen=True)
class InputRef:
    """An edge's source: the graph input `name`."""

    name: str

    def __str__(self) -> str:
        return f"{INPUT_PREFIX}{self.name}"


Source = Link | InputRef


def parse_source(text: str) -> Source:
    if not isinstance(text, str) or not text:
        raise UserError(f"an input must be 'node', 'node.output' or '$inputs.name', got {text!r}")
    if text.startswith(INPUT_PREFIX):
        return InputRef(text[len(INPUT_PREFIX):])
    node, _, output = text.partition(".")
    return Link(node, output or None)


@dataclass
class GraphInput:
    type: str = "any"
    default: Any = None
    doc: str | None = None


@dataclass
class GraphParam:
    """A graph-level value (the YAML's top `params:`), referenced in node params as `$params.NAME`.

    `origin` says where the value was set ("graph file", "--set", "Python API"): `graphflow
    explain` shows it. It is never part of a key; only the substituted value is."""

    value: Any
    origin: str = "graph file"
    line: int | None = None


@dataclass
class NodeSpec:
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Source] = field(default_factory=dict)
    cache: CachePolicy | None = None  # overrides the node type's policy
    line: int | None = None
    param_lines: dict[str, int] = field(default_factory=dict)
    # where `params` holds a graph-level value (`$params.NAME`, substituted at load): path -> NAME.
    # A value set on the node itself (set_param, --set NODE.params...) drops the reference below it.
    param_refs: dict[ParamPath, str] = field(default_factory=dict)
    # where a value was set by a node-level override ("--set NODE.params.KEY"): path -> what set it
    param_origins: dict[ParamPath, str] = field(default_factory=dict)


@dataclass
class GraphSpec:
    """A whole graph as data: what a YAML file holds (plus where it came from)."""

    name: str = "graph"
    inputs: dict[str, GraphInput] = field(default_factory=dict)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    outputs: dict[str, Source] = field(default_factory=dict)
    source_path: Path | None = None
    params: dict[str, GraphParam] = field(default_factory=dict)


__all__ = ["GraphInput", "GraphParam", "GraphSpec", "INPUT_PREFIX", "InputRef", "Link", "NodeSpec", "PARAMS_PREFIX",
           "ParamPath", "Source", "parse_source"]
