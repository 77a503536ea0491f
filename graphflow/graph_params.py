"""Graph-level values: a graph's top `params:` and the `$params.NAME` references in node params.

A reference is a whole value (`texels_per_metre: $params.texels_per_metre`), at any depth of a
node's params (inside mappings and lists). It is substituted when the graph is loaded, so
validation, the node and its cache key see the plain typed value: a key is the same whether the
value was written inline or through `$params`. Where it came from is kept beside the params
(`NodeSpec.param_refs`, `GraphParam.origin`) for `graphflow explain`, never in the key.

There is no interpolation inside strings: a string that holds `$params.` other than as a whole
reference is an error at load. Declared params no node uses are allowed (silently). A value set
on a node itself (`--set NODE.params.KEY=...`, `Graph.set_param`) wins over the graph-level value
for that node only: it drops the reference at and below that key.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from .errors import Problem, UserError
from .spec import PARAMS_PREFIX, GraphParam, NodeSpec, ParamPath


def path_text(path: ParamPath) -> str:
    """A param path as written in `--set` and messages: keys and list indices joined by dots."""
    return ".".join(str(part) for part in path)


def _strings_with_prefix(value: Any, path: ParamPath = ()) -> Iterator[tuple[ParamPath, str]]:
    """(path, text) of every string inside `value` (mappings and lists) that mentions `$params.`."""
    if isinstance(value, str):
        if PARAMS_PREFIX in value:
            yield path, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings_with_prefix(inner, (*path, str(key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _strings_with_prefix(inner, (*path, index))


def _put(params: dict[str, Any], path: ParamPath, value: Any) -> None:
    target: Any = params
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _reference_problem(text: str, names: dict[str, GraphParam]) -> tuple[str | None, str | None]:
    """(the graph param a whole-value reference names, None) or (None, what is wrong with `text`)."""
    if not text.startswith(PARAMS_PREFIX):
        return None, (f"{text!r}: '$params.' may only be a whole value, '$params.NAME' "
                      "(there is no interpolation inside strings)")
    name = text[len(PARAMS_PREFIX):]
    if not name.isidentifier():
        return None, (f"{text!r} names no graph param: write '$params.NAME', NAME one of "
                      f"{', '.join(names) or 'none declared'}")
    if name not in names:
        return None, (f"'$params.{name}' is not declared (graph params: {', '.join(names) or 'none'}; "
                      "declare it under the graph's top `params:`)")
    return name, None


def substitute(node_id: str, spec: NodeSpec, graph_params: dict[str, GraphParam]) -> list[Problem]:
    """Replace each `$params.NAME` in the node's params by a copy of the graph-level value and note
    where (`spec.param_refs`); every bad reference is a Problem naming the node and the param."""
    problems: list[Problem] = []
    found = list(_strings_with_prefix(spec.params))
    if found:  # nested mappings and lists may be the caller's: substitute in a copy
        spec.params = copy.deepcopy(spec.params)
    for path, text in found:
        name, problem = _reference_problem(text, graph_params)
        if name is None:
            line = spec.param_lines.get(str(path[0]), spec.line)
            problems.append(Problem(f"param '{path_text(path)}': {problem}", node_id, line))
            continue
        _put(spec.params, path, copy.deepcopy(graph_params[name].value))
        spec.param_refs[path] = name
    return problems


def reference_error(value: Any, graph_params: dict[str, GraphParam]) -> str | None:
    """What is wrong with the first bad `$params.` reference inside `value` (None: all fine)."""
    for path, text in _strings_with_prefix(value):
        problem = _reference_problem(text, graph_params)[1]
        if problem is not None:
            return f"at '{path_text(path)}': {problem}" if path else problem
    return None


def read_declared(raw: Any, lines: dict[tuple[str, ...], int], problems: list[Problem]) -> dict[str, GraphParam]:
    """The graph's top `params:` (name -> value); names are identifiers and values hold no
    `$params.` (a graph param never refers to another)."""
    if not isinstance(raw, dict):
        problems.append(Problem("'params' must be a mapping of name -> value (graph-level values, "
                                "referenced in node params as $params.NAME)", line=lines.get(("params",))))
        return {}
    declared: dict[str, GraphParam] = {}
    for name, value in raw.items():
        line = lines.get(("params", str(name)))
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(Problem(f"graph param {name!r}: a name must be letters, digits and '_'", line=line))
        elif any(True for _ in _strings_with_prefix(value)):
            problems.append(Problem(f"graph param '{name}': its value cannot refer to '$params.' "
                                    "(write the value itself)", line=line))
        else:
            declared[name] = GraphParam(value, "graph file", line)
    return declared


def set_declared(graph_params: dict[str, GraphParam], nodes: dict[str, NodeSpec], key: str, value: Any,
                 origin: str) -> None:
    """Set graph param `key` (`NAME`, or `NAME.a.b` inside a mapping value) and every node value
    that refers to it; an undeclared NAME is a UserError listing the declared ones."""
    name, *inner = key.split(".")
    if name not in graph_params:
        declared = ", ".join(graph_params)
        raise UserError(f"unknown graph param '{name}'", param=f"params.{key}",
                        hint=f"this graph declares (its top `params:`): {declared}" if declared else
                        "this graph declares no `params:`; set a node's own with NODE.params.KEY=VALUE")
    old = graph_params[name]
    new = value
    if inner:
        new = copy.deepcopy(old.value)
        target = new
        for part in inner[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise UserError(f"graph param '{name}' is not a mapping with '{'.'.join(inner)}'",
                            param=f"params.{key}", hint=f"set it whole: params.{name}=VALUE")
        target[inner[-1]] = value
    graph_params[name] = GraphParam(new, origin, old.line)
    for spec in nodes.values():
        for path, ref in spec.param_refs.items():
            if ref == name:
                _put(spec.params, path, copy.deepcopy(new))


def forget_below(spec: NodeSpec, key: str) -> None:
    """A node's own value set at dotted `key`: references and origins at, below or above it
    (a mapping that came whole from a graph param and is now edited) no longer hold."""
    parts = key.split(".")
    for table in (spec.param_refs, spec.param_origins):
        for path in [p for p in table if _overlaps([str(x) for x in p], parts)]:
            del table[path]


def _overlaps(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def with_references(spec: NodeSpec) -> dict[str, Any]:
    """The node's params as written: `$params.NAME` back where a graph-level value was substituted."""
    params = copy.deepcopy(spec.params)
    for path, name in spec.param_refs.items():
        _put(params, path, f"{PARAMS_PREFIX}{name}")
    return params


def value_at(params: dict[str, Any], path: ParamPath) -> Any:
    value: Any = params
    for part in path:
        value = value[part]
    return value


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)


def provenance(spec: NodeSpec, graph_params: dict[str, GraphParam]) -> list[str]:
    """One line per node param that was not written on the node itself: its value and where it
    came from (a graph-level value and who set that, or a node-level --set)."""
    lines = []
    for path, name in sorted(spec.param_refs.items(), key=lambda kv: path_text(kv[0])):
        declared = graph_params[name]
        if declared.origin.startswith("--set"):
            source = declared.origin
        else:
            line = f" line {declared.line}" if declared.origin == "graph file" and declared.line else ""
            source = f"params.{name}, {declared.origin}{line}"
        lines.append(f"{path_text(path)} = {_shown(value_at(spec.params, path))}  (from {source})")
    for path, origin in sorted(spec.param_origins.items(), key=lambda kv: path_text(kv[0])):
        lines.append(f"{path_text(path)} = {_shown(value_at(spec.params, path))}  (from {origin})")
    return lines


def reference_note(spec: NodeSpec, loc: tuple[Any, ...]) -> str:
    """' (from params.NAME)' when a validation error at `loc` lies in a graph-level value."""
    parts = [str(x) for x in loc]
    for path, name in spec.param_refs.items():
        if _overlaps([str(x) for x in path], parts):
            return f" (from params.{name})"
    return ""


__all__ = ["forget_below", "path_text", "provenance", "read_declared", "reference_error", "reference_note",
           "set_declared", "substitute", "value_at", "with_references"]
