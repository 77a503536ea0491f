"""Graph-level values (issue 24, item 2): a graph's top `params:`, `$params.NAME` in node params,
`--set params.NAME=VALUE`, and where `graphflow explain` says a value came from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph, GraphInvalid, UserError

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"

VIA_PARAMS = """
graph: dense
params:
  factor: 3
  sizes: {a: 1.5, b: 2.5}
nodes:
  c: {type: toy.const, params: {value: 2, size: 3}}
  s: {type: toy.scale, params: {factor: $params.factor}, inputs: {x: c}}
  t: {type: toy.scale, params: {factor: $params.factor}, inputs: {x: s}}
  sp: {type: toy.split, params: {values: $params.sizes}}
  m: {type: toy.map_square, inputs: {xs: sp}}
outputs: {t: t, m: m}
"""

INLINE = """
graph: dense
nodes:
  c: {type: toy.const, params: {value: 2, size: 3}}
  s: {type: toy.scale, params: {factor: 3}, inputs: {x: c}}
  t: {type: toy.scale, params: {factor: 3}, inputs: {x: s}}
  sp: {type: toy.split, params: {values: {a: 1.5, b: 2.5}}}
  m: {type: toy.map_square, inputs: {xs: sp}}
outputs: {t: t, m: m}
"""


def keys_of(result: gf.RunResult) -> dict[tuple[str, str | None], str]:
    return {(e.node, e.item): e.key for e in result.report.entries}


def test_references_are_substituted_with_the_typed_value() -> None:
    graph = Graph.from_yaml(VIA_PARAMS, registry=toys).check()
    assert graph.nodes["s"].params == {"factor": 3} and graph.nodes["t"].params == {"factor": 3}
    assert graph.nodes["sp"].params == {"values": {"a": 1.5, "b": 2.5}}
    graph.nodes["sp"].params["values"]["a"] = 9.0  # each node holds its own copy of a mapping value
    assert graph.params["sizes"].value == {"a": 1.5, "b": 2.5}
    assert graph.nodes["s"].param_refs == {("factor",): "factor"}


def test_key_is_the_same_inline_or_through_params(tmp_path: Path) -> None:
    via = gf.run(Graph.from_yaml(VIA_PARAMS, registry=toys), cache=tmp_path / "a")
    inline = gf.run(Graph.from_yaml(INLINE, registry=toys), cache=tmp_path / "b")
    assert keys_of(via) == keys_of(inline) and len(keys_of(via)) == 6
    assert via.outputs["t"].tolist() == [18.0, 18.0, 18.0]


def test_round_trip_writes_the_references_back() -> None:
    graph = Graph.from_yaml(VIA_PARAMS, registry=toys)
    text = graph.to_yaml()
    assert "$params.factor" in text and "$params.sizes" in text
    assert Graph.from_yaml(text, registry=toys) == graph and Graph.from_yaml(INLINE, registry=toys) != graph


def test_graph_level_set_reaches_every_reference_and_a_node_set_wins() -> None:
    graph = Graph.from_yaml(VIA_PARAMS, registry=toys)
    graph.apply_overrides(["t.params.factor=5", "params.factor=4", "params.sizes.b=7"])
    assert graph.nodes["s"].params["factor"] == 4 and graph.nodes["t"].params["factor"] == 5
    assert graph.nodes["sp"].params["values"] == {"a": 1.5, "b": 7}
    assert graph.params["factor"].origin == "--set params.factor"


def test_python_editing_refers_to_graph_params() -> None:
    graph = Graph.from_yaml(VIA_PARAMS, registry=toys)
    graph.add("u", "toy.scale", params={"factor": "$params.factor"}, inputs={"x": "t"})
    graph.set_param("t", "factor", 8.0)
    graph.set_graph_param("factor", 6)
    assert graph.nodes["u"].params["factor"] == 6 and graph.nodes["t"].params["factor"] == 8.0
    graph.set_param("t", "factor", "$params.factor")  # linked again
    assert graph.nodes["t"].params["factor"] == 6 and graph.nodes["t"].param_refs == {("factor",): "factor"}
    with pytest.raises(UserError, match="'\\$params.nope' is not declared"):
        graph.set_param("t", "factor", "$params.nope")
    assert graph.nodes["t"].params["factor"] == 6


def test_bad_references_name_node_param_and_the_declared_names() -> None:
    with pytest.raises(GraphInvalid) as err:
        Graph.from_yaml(VIA_PARAMS.replace("factor: $params.factor}, inputs: {x: s}",
                                           "factor: $params.factr}, inputs: {x: s}"), registry=toys)
    text = str(err.value)
    assert "node 't'" in text and "param 'factor'" in text and "'$params.factr' is not declared" in text
    assert "graph params: factor, sizes" in text and "line 9" in text
    with pytest.raises(GraphInvalid, match="no interpolation inside strings"):
        Graph.from_yaml(VIA_PARAMS.replace("$params.sizes", "'x$params.sizes'"), registry=toys)
    with pytest.raises(UserError, match="unknown graph param 'factr'.*: factor, sizes"):
        Graph.from_yaml(VIA_PARAMS, registry=toys).apply_overrides(["params.factr=2"])


def test_a_bad_value_is_named_with_its_graph_param() -> None:
    with pytest.raises(GraphInvalid, match=r"node 's'.*param 'factor'.*\(from params.factor\)"):
        Graph.from_yaml(VIA_PARAMS, registry=toys).apply_overrides(["params.factor=lots"]).check()


def test_python_api_sets_graph_params_on_a_copy(tmp_path: Path) -> None:
    graph = Graph.from_yaml(VIA_PARAMS, registry=toys)
    result = gf.run(graph, cache=tmp_path / "c", params={"factor": 1})
    assert result.outputs["t"].tolist() == [2.0, 2.0, 2.0] and graph.nodes["t"].params["factor"] == 3


def test_cli_set_params_override_unknown_name_and_explain(tmp_path: Path, cli) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(VIA_PARAMS)
    out = tmp_path / "out"
    run = cli("run", str(path), "--out", str(out), "-q", "--set", "params.factor=10", "--set", "s.params.factor=1")
    assert run.returncode == 0, run.stderr
    ran = {e["node"]: e["key"] for e in json.loads((out / "report.json").read_text())["nodes"]}
    explained = cli("explain", str(path), "t", "--set", "params.factor=10", "--set", "s.params.factor=1")
    assert explained.returncode == 0, explained.stderr
    assert f"key: {ran['t']} (in the cache" in explained.stdout
    assert "factor = 10  (from --set params.factor)" in explained.stdout
    own = cli("explain", str(path), "s", "--set", "params.factor=10", "--set", "s.params.factor=1")
    assert "factor = 1  (from --set s.params.factor)" in own.stdout and "(from --set params" not in own.stdout
    from_file = cli("explain", str(path), "t")
    assert "factor = 3  (from params.factor, graph file line 4)" in from_file.stdout
    unknown = cli("run", str(path), "-q", "--set", "params.factr=2")
    assert unknown.returncode == 2 and "unknown graph param 'factr'" in unknown.stderr
    assert "declares (its top `params:`): factor, sizes" in unknown.stderr


def test_cli_undeclared_reference_exits_2_naming_node_and_param(tmp_path: Path, cli) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(VIA_PARAMS.replace("params: {factor: $params.factor}, inputs: {x: c}",
                                       "params: {factor: $params.scale}, inputs: {x: c}"))
    res = cli("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "node 's'" in res.stderr and "param 'factor'" in res.stderr
    assert "'$params.scale' is not declared" in res.stderr


def test_shipped_graphs_state_the_density_once_and_the_batch_pipeline_takes_it() -> None:
    import nodes  # noqa: F401 - registers the node types the shipped graphs use
    from nodes.batch.pipeline import load_pipeline

    for name in ["demo_room.yaml", "texture_scene.yaml", "texture_scene_sd.yaml", "batch_texture_scene.yaml"]:
        text = (GRAPHS / name).read_text()
        assert text.count("texels_per_metre: 128") == 1, name
        graph = Graph.from_yaml(GRAPHS / name)
        densities = {graph.nodes[n].params["texels_per_metre"] for n in ("views", "project")}
        assert densities == {128}, name
    pipeline = load_pipeline(GRAPHS / "batch_texture_scene.yaml", ["params.texels_per_metre=256",
                                                                   "views.params.texels_per_metre=0"])
    assert pipeline.nodes["project"].params["texels_per_metre"] == 256
    assert pipeline.nodes["views"].params["texels_per_metre"] == 0
