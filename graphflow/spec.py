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
class NodeSpec:
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Source] = field(default_factory=dict)
    cache: CachePolicy | None = None  # overrides the node type's policy
    line: int | None = None
    param_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class GraphSpec:
    """A whole graph as data: what a YAML file holds (plus where it came from)."""

    name: str = "graph"
    inputs: dict[str, GraphInput] = field(default_factory=dict)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    outputs: dict[str, Source] = field(default_factory=dict)
    source_path: Path | None = None


__all__ = ["GraphInput", "GraphSpec", "INPUT_PREFIX", "InputRef", "Link", "NodeSpec", "Source", "parse_source"]
