"""YAML in and out for graphs (safe loading only; node types only from the registry).

Format (DESIGN.md §2)::

    graph: texture_scene
    inputs:
      scene: {type: path, default: null}
    params: {texels_per_metre: 128}     # graph-level values: `$params.texels_per_metre` in node params
    nodes:
      segment:
        type: segment.parts
        params: {by: node}
        inputs: {scene: scene}          # "node_id", "node_id.output" or "$inputs.name"
        cache: default                  # optional: default | memory_only | never
    outputs: {asset: export}

A relative path default of a `path` input is relative to the YAML file. A top `params:` mapping
holds graph-level values that node params refer to as `$params.NAME` (whole values only; see
graph_params.py): they are substituted here, at load.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphInvalid, Problem, UserError
from .graph_params import read_declared, substitute, with_references
from .spec import GraphInput, GraphSpec, NodeSpec, parse_source

TOP_KEYS = {"graph", "inputs", "params", "nodes", "outputs", "description"}
NODE_KEYS = {"type", "params", "inputs", "cache"}
CACHE_POLICIES = ("default", "memory_only", "never")


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key, by its path of keys.

    Iterative, and each YAML node is indexed once: a document of aliases (a "billion laughs")
    stays linear, and an alias that contains itself is a user error, not a RecursionError.
    """
    lines: dict[tuple[str, ...], int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return lines
    stack: list[tuple[yaml.Node, tuple[str, ...], frozenset[int]]] = [(root, (), frozenset())]
    seen: set[int] = set()
    while stack:
        node, path, ancestors = stack.pop()
        if id(node) in ancestors:
            raise UserError("the YAML refers to itself (an alias inside its own anchor)", line=node.start_mark.line + 1,
                            hint="graphs must be trees: remove the recursive alias")
        if id(node) in seen:
            continue  # an alias of a node indexed already
        seen.add(id(node))
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    sub = (*path, str(key_node.value))
                    lines[sub] = key_node.start_mark.line + 1
                    stack.append((value_node, sub, inner))
                else:
                    stack.append((value_node, path, inner))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path, inner) for item in node.value)
    return lines


def load_spec(source: str | Path) -> GraphSpec:
    """Read a graph from a YAML file path or YAML text; raises UserError/GraphInvalid."""
    path: Path | None = None
    if isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read the graph file: {exc.strerror}", file=str(path),
                            hint="check the path") from exc
        except UnicodeDecodeError:
            raise UserError("the graph file is not UTF-8 text", file=str(path),
                            hint="save the YAML file as UTF-8") from None
    else:
        text = source
    where = str(path) if path else "<graph>"
    try:
        data = yaml.safe_load(text)
        lines = _line_index(text)
    except RecursionError:
        raise UserError("the YAML is nested too deeply", file=where, hint="flatten the document") from None
    except UserError as exc:
        exc.file = exc.file or where
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed YAML: {problem}", file=where, line=line,
                        hint="fix the YAML syntax at that line") from exc
    return spec_from_dict(data, lines, path)


def spec_from_dict(data: Any, lines: dict[tuple[str, ...], int] | None = None,
                   path: Path | None = None) -> GraphSpec:
    """A parsed YAML document as a `GraphSpec`; every structural problem is collected first and
    raised together as `GraphInvalid`, each with its YAML line."""
    lines = lines or {}
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise GraphInvalid([Problem("a graph file must be a mapping with 'nodes' (and 'graph', 'inputs', 'outputs')")])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(f"unknown top-level key '{key}' (allowed: {', '.join(sorted(TOP_KEYS))})",
                                    line=lines.get((str(key),))))
    graph = GraphSpec(str(data.get("graph") or (path.stem if path else "graph")), source_path=path)
    _read_inputs(data.get("inputs") or {}, graph, lines, problems)
    graph.params = read_declared(data.get("params") or {}, lines, problems)
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.append(Problem("'nodes' must be a non-empty mapping of node id -> {type, params, inputs}",
                                line=lines.get(("nodes",))))
        raw_nodes = {}
    for nid, spec in raw_nodes.items():
        node = _read_node(str(nid), spec, lines, problems)
        if node is not None:
            problems += substitute(str(nid), node, graph.params)
            graph.nodes[str(nid)] = node
    _read_outputs(data.get("outputs") or {}, graph, lines, problems)
    if problems:
        raise GraphInvalid(problems)
    return graph


def _read_inputs(raw: Any, graph: GraphSpec, lines: dict[tuple[str, ...], int], problems: list[Problem]) -> None:
    if not isinstance(raw, dict):
        problems.append(Problem("'inputs' must be a mapping of name -> {type, default}", line=lines.get(("inputs",))))
        return
    for name, spec in raw.items():
        spec = spec if isinstance(spec, dict) else {"type": "any", "default": spec}
        bad = set(spec) - {"type", "default", "doc"}
        if bad:
            problems.append(Problem(f"graph input '{name}': unknown keys {sorted(map(str, bad))}",
                                    line=lines.get(("inputs", name))))
        graph.inputs[str(name)] = GraphInput(type=str(spec.get("type", "any")), default=spec.get("default"),
                                             doc=spec.get("doc"))


def _read_node(nid: str, spec: Any, lines: dict[tuple[str, ...], int], problems: list[Problem]) -> NodeSpec | None:
    line = lines.get(("nodes", nid))
    if not isinstance(spec, dict) or "type" not in spec:
        problems.append(Problem("a node must be a mapping with a 'type'", nid, line))
        return None
    bad = set(spec) - NODE_KEYS
    if bad:
        problems.append(Problem(f"unknown keys {sorted(map(str, bad))} (allowed: {', '.join(sorted(NODE_KEYS))})",
                                nid, line))
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        problems.append(Problem("'params' must be a mapping", nid, lines.get(("nodes", nid, "params"), line)))
        params = {}
    cache = spec.get("cache")
    if cache is not None and cache not in CACHE_POLICIES:
        problems.append(Problem(f"cache must be one of {', '.join(CACHE_POLICIES)}, got {cache!r}", nid, line))
        cache = None
    # a copy per node: a YAML alias shared by two nodes must not tie their params together
    node = NodeSpec(type=str(spec["type"]), params=copy.deepcopy(params), cache=cache, line=line,
                    param_lines={str(k): lines.get(("nodes", nid, "params", str(k)), line) for k in params})
    raw_links = spec.get("inputs") or {}
    if not isinstance(raw_links, dict):
        problems.append(Problem("'inputs' must be a mapping of input -> source", nid, line))
        raw_links = {}
    for port, src in raw_links.items():
        try:
            node.inputs[str(port)] = parse_source(src)
        except UserError as exc:
            problems.append(Problem(f"input '{port}': {exc.message}", nid,
                                    lines.get(("nodes", nid, "inputs", str(port)), line)))
    return node


def _read_outputs(raw: Any, graph: GraphSpec, lines: dict[tuple[str, ...], int], problems: list[Problem]) -> None:
    if not isinstance(raw, dict):
        problems.append(Problem("'outputs' must be a mapping of name -> node or node.output"))
        return
    for name, src in raw.items():
        try:
            graph.outputs[str(name)] = parse_source(src)
        except UserError as exc:
            problems.append(Problem(f"output '{name}': {exc.message}", line=lines.get(("outputs", str(name)))))


def spec_to_dict(graph: GraphSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"graph": graph.name}
    if graph.inputs:
        out["inputs"] = {}
        for name, gi in graph.inputs.items():
            spec: dict[str, Any] = {"type": gi.type, "default": gi.default}
            if gi.doc:
                spec["doc"] = gi.doc
            out["inputs"][name] = spec
    if graph.params:
        out["params"] = {name: declared.value for name, declared in graph.params.items()}
    out["nodes"] = {}
    for nid, spec in graph.nodes.items():
        node: dict[str, Any] = {"type": spec.type}
        if spec.params:
            node["params"] = with_references(spec)
        if spec.inputs:
            node["inputs"] = {port: str(src) for port, src in spec.inputs.items()}
        if spec.cache:
            node["cache"] = spec.cache
        out["nodes"][nid] = node
    if graph.outputs:
        out["outputs"] = {name: str(src) for name, src in graph.outputs.items()}
    return out


def dump_spec(graph: GraphSpec) -> str:
    return yaml.safe_dump(spec_to_dict(graph), sort_keys=False, default_flow_style=False, allow_unicode=True)


__all__ = ["dump_spec", "load_spec", "spec_from_dict", "spec_to_dict"]
