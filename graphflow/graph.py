"""`Graph`: node specs on a networkx multigraph, validated as a whole.

Node ids are the YAML keys. An input of a node is fed by a `Link` to another
node's output (`node` for its only output, `node.output` otherwise) or by an
`InputRef` to a graph input (`$inputs.name`). Links are objects, never
positional lists. Validation collects every problem before reporting. Graph-level values
(`params`, referenced as `$params.NAME` in node params) are substituted as nodes are added or
loaded; graph_params.py has the rules.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from pydantic import ValidationError

from . import graph_params, yamlio
from .errors import GraphInvalid, Problem, UserError
from .node import SEED_PARAM, SINGLE_OUTPUT, CachePolicy, Node, params_seed
from .ports import compatible, type_name
from .registry import Registry, registry as default_registry
from .spec import INPUT_PREFIX, GraphInput, GraphParam, GraphSpec, InputRef, Link, NodeSpec, Source, parse_source

INPUT_TYPES: dict[str, Any] = {"path": Path, "str": str, "int": int, "float": float, "bool": bool, "any": Any}


class Graph:
    def __init__(self, name: str = "graph", registry: Registry | None = None) -> None:
        self.name = name
        self.registry = registry or default_registry
        self.inputs: dict[str, GraphInput] = {}
        self.outputs: dict[str, Source] = {}
        self.nodes: dict[str, NodeSpec] = {}
        self.source_path: Path | None = None
        self.params: dict[str, GraphParam] = {}  # graph-level values, `$params.NAME` in node params

    # ---- editing ----
    def add(self, node_id: str, type: str | type[Node], params: dict[str, Any] | None = None,
            inputs: dict[str, str | Source] | None = None, cache: CachePolicy | None = None) -> Graph:
        if node_id in self.nodes:
            raise UserError(f"node '{node_id}' already exists", node=node_id)
        if not node_id or "." in node_id or node_id.startswith("$"):
            raise UserError(f"bad node id {node_id!r}: use letters, digits and '_'", node=node_id)
        spec = NodeSpec(type=self._type_name(type), params=dict(params or {}), cache=cache)
        problems = graph_params.substitute(node_id, spec, self.params)
        if problems:
            raise GraphInvalid(problems)
        self.nodes[node_id] = spec
        for port, src in (inputs or {}).items():
            self.connect(src, node_id, port)
        return self

    def connect(self, source: str | Source, node_id: str, port: str) -> Graph:
        if node_id not in self.nodes:
            raise UserError(f"no node '{node_id}' to connect to", node=node_id)
        self.nodes[node_id].inputs[port] = parse_source(source) if isinstance(source, str) else source
        return self

    def disconnect(self, node_id: str, port: str) -> Graph:
        self.nodes[node_id].inputs.pop(port, None)
        return self

    def remove(self, node_id: str) -> Graph:
        """Remove a node and every edge from it (consumers' inputs become unconnected)."""
        if node_id not in self.nodes:
            raise UserError(f"no node '{node_id}'", node=node_id)
        del self.nodes[node_id]
        for spec in self.nodes.values():
            for port in [p for p, s in spec.inputs.items() if isinstance(s, Link) and s.node == node_id]:
                del spec.inputs[port]
        self.outputs = {k: s for k, s in self.outputs.items() if not (isinstance(s, Link) and s.node == node_id)}
        return self

    def replace(self, node_id: str, type_or_node: str | type[Node], params: dict[str, Any] | None = None) -> Graph:
        """Swap a node's type, keeping its edges; raises `GraphInvalid` if the new ports don't fit them.

        `params=None` keeps the current params (they must be valid for the new type).
        """
        if node_id not in self.nodes:
            raise UserError(f"no node '{node_id}' to replace", node=node_id)
        old = self.nodes[node_id]
        new = copy.deepcopy(old)
        new.type = self._type_name(type_or_node)
        if params is not None:
            new.params = dict(params)
        self.nodes[node_id] = new
        problems = [p for p in self.validate() if p.node == node_id or self._feeds_from(p.node, node_id)]
        if problems:
            self.nodes[node_id] = old
            raise GraphInvalid(problems)
        return self

    def set_param(self, node_id: str, key: str, value: Any) -> Graph:
        """Set `key` (dotted for nested dicts: `a.b`) of a node's params. It wins over a graph-level
        value there (for this node only); a value `$params.NAME` refers to one."""
        if node_id not in self.nodes:
            raise UserError(f"no node '{node_id}'", node=node_id, param=key)
        problem = graph_params.reference_error(value, self.params)
        if problem is not None:
            raise UserError(problem, node=node_id, param=key)
        spec = self.nodes[node_id]
        graph_params.forget_below(spec, key)
        target = spec.params
        *path, last = key.split(".")
        for part in path:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"param '{key}' does not name a mapping", node=node_id, param=key)
        target[last] = value
        graph_params.substitute(node_id, spec, self.params)  # `value` may refer to a graph-level value
        return self

    def set_graph_param(self, key: str, value: Any, origin: str = "Python API") -> Graph:
        """Set the graph-level value `key` (`NAME`, or `NAME.a.b` inside a mapping) and every node
        param that refers to it, except where a node's own value was set since. `origin` is what
        `graphflow explain` says set it."""
        graph_params.set_declared(self.params, self.nodes, key, value, origin)
        return self

    def apply_overrides(self, sets: list[str], origin: str = "--set") -> Graph:
        """`NODE.params.KEY=VALUE` overrides (VALUE parsed as YAML), as the CLI's `--set` takes them;
        `*.params.KEY` sets every node whose params have KEY; `params.NAME=VALUE` sets a graph-level
        value (and the node params that refer to it). A node's own value wins over a graph-level one
        whatever their order. A batch node uses the same rule for its nested graph, so the rule
        lives with the graph, not with the CLI. `origin` prefixes what `graphflow explain` shows."""
        for item in sets:
            node, key, value = _parse_override(item)
            said = f"{origin} {item.partition('=')[0]}"
            if node is None:
                try:
                    self.set_graph_param(key, value, said)
                except UserError as exc:
                    exc.param = f"--set params.{key}"
                    raise
                continue
            targets = [node]
            if node == "*":
                targets = [nid for nid in self.nodes if key.split(".")[0] in self.node_class(nid).Params.model_fields]
                if not targets:
                    raise UserError(f"no node has a param '{key.split('.')[0]}'", param=f"--set *.params.{key}")
            elif node not in self.nodes:
                raise UserError(f"--set names unknown node '{node}'", param=f"--set {node}.params.{key}",
                                hint=f"nodes: {', '.join(self.nodes)}")
            for nid in targets:
                self.set_param(nid, key, value)
                self.nodes[nid].param_origins[tuple(key.split("."))] = said
        return self

    def resolve_inputs(self, given: dict[str, Any]) -> dict[str, Any]:
        """The value of every graph input for a run: given ones (relative paths against the working
        directory) or defaults (relative paths against the YAML file), converted to their type."""
        for name in given:
            if name not in self.inputs:
                raise UserError(f"unknown graph input '{name}'", param=f"--input {name}",
                                hint=f"this graph takes: {', '.join(self.inputs) or 'no inputs'}")
        default_base = self.source_path.parent if self.source_path else Path.cwd()
        values: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            value, base = (given[name], Path.cwd()) if name in given else (spec.default, default_base)
            values[name] = _convert_input(name, spec.type, value, base)
        return values

    def subgraph(self, node_ids: list[str]) -> Graph:
        """The given nodes and their ancestors, with the graph inputs they use."""
        keep: set[str] = set()
        dag = self.to_networkx()
        for nid in node_ids:
            if nid not in self.nodes:
                raise UserError(f"no node '{nid}'", node=nid)
            keep |= nx.ancestors(dag, nid) | {nid}
        sub = Graph(self.name, self.registry)
        sub.source_path = self.source_path
        sub.nodes = {k: copy.deepcopy(v) for k, v in self.nodes.items() if k in keep}
        used = {s.name for spec in sub.nodes.values() for s in spec.inputs.values() if isinstance(s, InputRef)}
        sub.inputs = {k: copy.deepcopy(v) for k, v in self.inputs.items() if k in used}
        sub.outputs = {k: s for k, s in self.outputs.items() if isinstance(s, Link) and s.node in keep}
        sub.params = copy.deepcopy(self.params)
        return sub

    # ---- structure ----
    def to_networkx(self) -> nx.MultiDiGraph:
        dag = nx.MultiDiGraph()
        for nid in self.nodes:
            dag.add_node(nid)
        for nid, spec in self.nodes.items():
            for port, src in spec.inputs.items():
                if isinstance(src, Link) and src.node in self.nodes:
                    dag.add_edge(src.node, nid, key=port, output=src.output)
        return dag

    def topological_order(self) -> list[str]:
        """Node ids in a deterministic topological order (YAML order breaks ties)."""
        order = {nid: i for i, nid in enumerate(self.nodes)}
        return list(nx.lexicographical_topological_sort(self.to_networkx(), key=order.__getitem__))

    def node_class(self, node_id: str) -> type[Node]:
        return self.registry.get(self.nodes[node_id].type)

    def output_type(self, src: Link) -> Any:
        ports = self.node_class(src.node).output_ports()
        name = src.output or (SINGLE_OUTPUT if len(ports) == 1 else None)
        return ports.get(name) if name else None

    # ---- validation ----
    def validate(self) -> list[Problem]:
        problems: list[Problem] = []
        classes: dict[str, type[Node]] = {}
        for nid, spec in self.nodes.items():
            try:
                classes[nid] = self.registry.get(spec.type)
            except UserError:
                problems.append(Problem(f"unknown node type '{spec.type}' (see `graphflow nodes`)", nid, spec.line))
                continue
            cls = classes[nid]
            try:
                params_seed(cls.Params.model_validate(spec.params))  # the reserved `seed`: an int >= 0
            except ValidationError as exc:
                for err in exc.errors():
                    key = ".".join(str(p) for p in err["loc"])
                    got = f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err else ""
                    line = spec.param_lines.get(str(err["loc"][0]) if err["loc"] else "", spec.line)
                    note = graph_params.reference_note(spec, err["loc"])
                    problems.append(Problem(f"param '{key}': {err['msg']}{got}{note}", nid, line))
            except ValueError as exc:
                problems.append(Problem(f"param '{SEED_PARAM}': {exc}", nid, spec.param_lines.get(SEED_PARAM, spec.line)))
        for nid, spec in self.nodes.items():
            cls = classes.get(nid)
            if cls is None:
                continue
            ports = cls.input_ports()
            for port, src in spec.inputs.items():
                if port not in ports:
                    problems.append(Problem(f"no input '{port}' (inputs: {', '.join(ports) or 'none'})", nid, spec.line))
                    continue
                src_type = self._source_type(src, nid, spec, classes, problems)
                if src_type is not None and not compatible(src_type, ports[port].type):
                    problems.append(Problem(
                        f"input '{port}' expects {type_name(ports[port].type)} but '{src}' gives {type_name(src_type)}",
                        nid, spec.line))
            for port in ports.values():
                if port.required and port.name not in spec.inputs:
                    problems.append(Problem(f"required input '{port.name}' ({type_name(port.type)}) is not connected",
                                            nid, spec.line))
        for name, src in self.outputs.items():
            if isinstance(src, Link) and src.node not in self.nodes:
                problems.append(Problem(f"graph output '{name}' names unknown node '{src.node}'"))
        for name, gi in self.inputs.items():
            if gi.type not in INPUT_TYPES:
                problems.append(Problem(f"graph input '{name}' has unknown type '{gi.type}' "
                                        f"(one of {', '.join(INPUT_TYPES)})"))
        dag = self.to_networkx()
        if not nx.is_directed_acyclic_graph(dag):
            cycle = [u for u, _v, *_ in nx.find_cycle(dag)]
            problems.append(Problem(f"cycle: {' -> '.join(cycle + [cycle[0]])}", cycle[0], self.nodes[cycle[0]].line))
        return problems

    def _source_type(self, src: Source, nid: str, spec: NodeSpec, classes: dict[str, type[Node]],
                     problems: list[Problem]) -> Any:
        if isinstance(src, InputRef):
            gi = self.inputs.get(src.name)
            if gi is None:
                problems.append(Problem(f"unknown graph input '{src.name}' (declared: {', '.join(self.inputs) or 'none'})",
                                        nid, spec.line))
                return None
            return INPUT_TYPES.get(gi.type, Any)
        if src.node not in self.nodes:
            problems.append(Problem(f"input from unknown node '{src.node}'", nid, spec.line))
            return None
        cls = classes.get(src.node)
        if cls is None:
            return None
        outs = cls.output_ports()
        if src.output is None and len(outs) > 1:
            problems.append(Problem(f"'{src.node}' has several outputs ({', '.join(outs)}): name one as "
                                    f"'{src.node}.<output>'", nid, spec.line))
            return None
        name = src.output or next(iter(outs))
        if name not in outs:
            problems.append(Problem(f"'{src.node}' has no output '{name}' (outputs: {', '.join(outs)})", nid, spec.line))
            return None
        return outs[name]

    def check(self) -> Graph:
        """Raise `GraphInvalid` listing every problem, or return self."""
        problems = self.validate()
        if problems:
            raise GraphInvalid(problems)
        return self

    def _feeds_from(self, node_id: str | None, replaced: str) -> bool:
        if node_id is None or node_id not in self.nodes:
            return False
        return any(isinstance(s, Link) and s.node == replaced for s in self.nodes[node_id].inputs.values())

    def _type_name(self, type_or_node: str | type[Node]) -> str:
        if isinstance(type_or_node, str):
            return type_or_node
        if type_or_node.name not in self.registry.types:
            self.registry.register(type_or_node)
        return type_or_node.name

    # ---- YAML ----
    @classmethod
    def from_spec(cls, spec: GraphSpec, registry: Registry | None = None) -> Graph:
        graph = cls(spec.name, registry)
        graph.inputs, graph.nodes, graph.outputs = spec.inputs, spec.nodes, spec.outputs
        graph.source_path, graph.params = spec.source_path, spec.params
        return graph

    def spec(self) -> GraphSpec:
        """The graph as plain data (shares its dicts with the graph)."""
        return GraphSpec(self.name, self.inputs, self.nodes, self.outputs, self.source_path, self.params)

    @classmethod
    def from_yaml(cls, source: str | Path, registry: Registry | None = None) -> Graph:
        """A graph from a YAML file path or YAML text; raises UserError/GraphInvalid."""
        return cls.from_spec(yamlio.load_spec(source), registry)

    def to_dict(self) -> dict[str, Any]:
        return yamlio.spec_to_dict(self.spec())

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yamlio.dump_spec(self.spec())
        if path is not None:
            Path(path).write_text(text)
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.name, self.inputs, self.outputs, _comparable(self)) == (other.name, other.inputs, other.outputs,
                                                                             _comparable(other))


def _comparable(graph: Graph) -> tuple[dict[str, Any], dict[str, Any]]:
    """What graph equality compares beyond names, inputs and outputs: nodes and graph-level values
    (not YAML lines, nor who set a value)."""
    nodes = {k: (v.type, v.params, v.inputs, v.cache, v.param_refs) for k, v in graph.nodes.items()}
    return nodes, {k: p.value for k, p in graph.params.items()}


def _parse_override(item: str) -> tuple[str | None, str, Any]:
    """`NODE.params.KEY=VALUE` -> (NODE, KEY, parsed VALUE); `params.NAME=VALUE` (a graph-level
    value) -> (None, NAME, parsed VALUE). A node called `params` keeps `params.params.KEY=...`."""
    target, eq, raw = item.partition("=")
    parts = target.split(".")
    graph_level = len(parts) >= 2 and parts[0] == "params" and (len(parts) == 2 or parts[1] != "params")
    if not eq or not all(parts) or not graph_level and (len(parts) < 3 or parts[1] != "params"):
        raise UserError(f"cannot parse --set {item!r}", param="--set",
                        hint="use NODE.params.KEY=VALUE, or params.NAME=VALUE for a graph-level value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise UserError(f"--set {item!r}: the value is not valid YAML", param="--set") from exc
    return (None, ".".join(parts[1:]), value) if graph_level else (parts[0], ".".join(parts[2:]), value)


def _convert_input(name: str, type_: str, value: Any, base: Path) -> Any:
    if type_ == "path" and value is not None:
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if value is not None and type_ in ("int", "float", "bool", "str"):
        try:
            return {"int": int, "float": float, "str": str, "bool": _to_bool}[type_](value)
        except (TypeError, ValueError) as exc:
            raise UserError(f"graph input '{name}' must be {type_}, got {value!r}", param=f"--input {name}") from exc
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


__all__ = ["Graph", "GraphInput", "INPUT_PREFIX", "INPUT_TYPES", "InputRef", "Link", "NodeSpec", "Source",
           "parse_source"]
