from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph
from graphflow.keys import run_key

params_st = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6),
                            st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                                      st.text(max_size=5), st.booleans()), max_size=6)


@settings(max_examples=200, deadline=None)
@given(params=params_st, inputs=st.dictionaries(st.text("xyz", min_size=1, max_size=3),
                                                st.text("0123456789abcdef", min_size=8, max_size=8), max_size=4))
def test_key_ignores_dict_order(params: dict, inputs: dict) -> None:
    reordered_params = dict(reversed(list(params.items())))
    reordered_inputs = dict(reversed(list(inputs.items())))
    assert run_key("n", 1, params, inputs) == run_key("n", 1, reordered_params, reordered_inputs)


@settings(max_examples=3, deadline=None)
@given(batch=st.lists(params_st, min_size=100, max_size=100))
def test_keys_identical_across_processes(batch: list[dict]) -> None:
    """100 generated param sets per example, keyed here and in a fresh interpreter."""
    here = [run_key("node.type", 3, p, {"x": "abc"}, "item") for p in batch]
    code = ("import json,sys; from graphflow.keys import run_key; "
            "print(json.dumps([run_key('node.type', 3, p, {'x': 'abc'}, 'item') for p in json.load(sys.stdin)]))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(batch), capture_output=True, text=True,
                         check=True).stdout
    assert here == json.loads(out)


CHAIN = """
graph: keys
nodes:
  a: {type: toy.const, params: {value: 1.5}}
  b: {type: toy.scale, params: {factor: 2}, inputs: {x: a}}
  c: {type: toy.scale, params: {factor: 3}, inputs: {x: b}}
  d: {type: toy.const, params: {value: -1}}
  e: {type: toy.add, inputs: {a: c, b: d}}
  f: {type: toy.scale, params: {factor: 5}, inputs: {x: d}}
outputs: {e: e, f: f}
"""
DESCENDANTS = {"a": {"a", "b", "c", "e"}, "b": {"b", "c", "e"}, "c": {"c", "e"}, "d": {"d", "e", "f"},
               "e": {"e"}, "f": {"f"}}
PARAM = {"a": "value", "b": "factor", "c": "factor", "d": "value", "f": "factor"}


def keys_of(report: gf.RunReport) -> dict[str, str]:
    return {e.node: e.key for e in report.entries}


@settings(max_examples=25, deadline=None)
@given(node=st.sampled_from(sorted(PARAM)), value=st.floats(min_value=-100, max_value=100, allow_nan=False)
       .filter(lambda v: v not in (0.0, 1.5, 2.0, 3.0, -1.0, 5.0)))
def test_param_change_changes_exactly_the_keys_of_node_and_descendants(node: str, value: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        g = Graph.from_yaml(CHAIN, registry=toys)
        before = keys_of(gf.run(g, cache=Path(tmp)).report)
        g.set_param(node, PARAM[node], value)
        after = keys_of(gf.run(g, cache=Path(tmp)).report)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == DESCENDANTS[node]
