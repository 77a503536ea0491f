from __future__ import annotations

import pytest
from helpers.toys import Scale, toys

from graphflow import Graph, GraphInvalid, UserError

GOOD = """
graph: g
inputs:
  n: {type: float, default: 1.0}
nodes:
  c: {type: toy.const, params: {value: 3}}
  s: {type: toy.scale, params: {factor: 0.5}, inputs: {x: c}}
  b: {type: toy.bounds, inputs: {x: s}}
  a: {type: toy.add, inputs: {a: b.low, b: b.high}}
outputs: {out: a}
"""


def test_round_trip_is_lossless() -> None:
    g = Graph.from_yaml(GOOD, registry=toys)
    text = g.to_yaml()
    g2 = Graph.from_yaml(text, registry=toys)
    assert g2 == g
    assert g2.to_yaml() == text


def test_validation_reports_every_problem_with_node_and_line() -> None:
    bad = """
graph: bad
nodes:
  c: {type: toy.const, params: {size: -3, colour: red}}
  u: {type: toy.nope}
  s:
    type: toy.scale
  t: {type: toy.total, inputs: {xs: c}}
  a: {type: toy.add, inputs: {a: $inputs.missing}}
outputs: {out: a}
"""
    with pytest.raises(GraphInvalid) as info:
        Graph.from_yaml(bad, registry=toys).check()
    text = str(info.value)
    problems = info.value.problems
    assert any(p.node == "c" and "size" in p.message and "greater than or equal to 1" in p.message for p in problems)
    assert any(p.node == "c" and "colour" in p.message for p in problems)
    assert any(p.node == "u" and "unknown node type 'toy.nope'" in p.message for p in problems)
    assert any(p.node == "s" and "required input 'x'" in p.message for p in problems)
    assert any(p.node == "t" and "expects Keyed[Tensor]" in p.message for p in problems)
    assert any(p.node == "a" and "unknown graph input 'missing'" in p.message for p in problems)
    lines = {p.node: p.line for p in problems}
    assert lines["u"] == 5 and lines["s"] == 6
    assert "line 4" in text  # params of node c are on line 4


def test_cycle_names_its_nodes() -> None:
    g = Graph("cyc", toys)
    g.add("a", "toy.scale").add("b", "toy.scale", inputs={"x": "a"}).connect("b", "a", "x")
    problems = g.validate()
    assert any("cycle" in p.message and "a" in p.message and "b" in p.message for p in problems)


def test_malformed_yaml_is_a_user_error_with_line() -> None:
    with pytest.raises(UserError) as info:
        Graph.from_yaml("nodes:\n  a: {type: [unclosed\n", registry=toys)
    assert info.value.line is not None


def test_programmatic_editing_and_replace() -> None:
    g = Graph.from_yaml(GOOD, registry=toys)
    g.set_param("s", "factor", 4.0)
    assert g.nodes["s"].params["factor"] == 4.0
    g.replace("s", "toy.sign", params={})  # same ports: x -> out
    assert g.nodes["s"].type == "toy.sign"
    g.check()
    with pytest.raises(GraphInvalid):
        g.replace("s", "toy.split", params={})  # no input x, output Keyed: does not fit
    assert g.nodes["s"].type == "toy.sign"  # unchanged after a failed replace
    g.replace("s", Scale, params={"factor": 2.0})
    assert "toy.scale" in g.to_yaml()
    sub = g.subgraph(["s"])
    assert set(sub.nodes) == {"c", "s"}
    g.remove("b")
    assert "b" not in g.nodes and "a" in g.nodes
    assert any("required input 'a'" in p.message for p in g.validate())


def test_apply_overrides_is_a_graph_method() -> None:
    g = Graph.from_yaml(GOOD, registry=toys)
    assert g.apply_overrides(["s.params.factor=4", "*.params.value=[9]"]) is g
    assert g.nodes["s"].params["factor"] == 4 and g.nodes["c"].params["value"] == [9]
    for bad, culprit in [("s.factor=4", "NODE.params.KEY=VALUE"), ("zz.params.x=1", "unknown node 'zz'"),
                         ("*.params.nothing=1", "no node has a param 'nothing'"), ("s.params.factor=[", "YAML")]:
        with pytest.raises(UserError, match=culprit.replace("[", r"\[").replace(".", r"\.")):
            g.apply_overrides([bad])
