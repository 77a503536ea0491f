"""`graphflow explain`: what a key is made of and why it differs from the last run's (issue 16, item 1)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph, UserError
from graphflow.explain import explain_key
from graphflow.keys import KeyParts, diff_parts

GRAPH = """
graph: explained
inputs:
  table: {type: path, default: table.txt}
nodes:
  c: {type: toy.const, params: {value: 3}}
  s: {type: toy.scale, params: {factor: 2}, inputs: {x: c}}
  sp: {type: toy.split}
  m: {type: toy.map_square, inputs: {xs: sp}}
  f: {type: toy.slow, inputs: {x: s}}
outputs: {s: s, m: m, f: f}
"""


def write_graph(folder: Path) -> Path:
    (folder / "table.txt").write_text("one\n")
    path = folder / "g.yaml"
    path.write_text(GRAPH)
    return path


def keys_of(report: gf.RunReport) -> dict[tuple[str, str | None], str]:
    return {(e.node, e.item): e.key for e in report.entries}


def test_explained_key_is_the_run_key_and_unchanged_after_the_run(tmp_path: Path) -> None:
    graph = Graph.from_yaml(write_graph(tmp_path), registry=toys)
    run_keys = keys_of(gf.run(graph, cache=tmp_path / "cache").report)
    for node, item in [("c", None), ("s", None), ("m", "b"), ("f", None)]:
        account = explain_key(graph, node, {}, tmp_path / "cache", item)
        assert account.key == run_keys[(node, item)] and account.cached
        assert account.last_key == account.key and account.changes == []
        assert "same key as the last run" in "\n".join(account.lines())


def test_param_change_is_named_with_old_and_new_value(tmp_path: Path) -> None:
    path = write_graph(tmp_path)
    gf.run(Graph.from_yaml(path, registry=toys), cache=tmp_path / "cache")
    changed = Graph.from_yaml(path, registry=toys)
    changed.set_param("s", "factor", 5.0)
    account = explain_key(changed, "s", {}, tmp_path / "cache")
    assert account.key is not None and not account.cached and account.key != account.last_key
    assert account.changes == ["param 'factor': 2.0 -> 5.0"]
    # downstream of a changed node the key is unknown until it runs: the account says which node
    below = explain_key(changed, "f", {}, tmp_path / "cache")
    assert below.key is None and below.waiting_on == ["s"]
    assert any("input 'x' (from s): not known yet" in c for c in below.changes)


def test_mapped_item_and_errors(tmp_path: Path) -> None:
    graph = Graph.from_yaml(write_graph(tmp_path), registry=toys)
    gf.run(graph, cache=tmp_path / "cache")
    with pytest.raises(UserError, match="runs once per item.*a, b, c"):
        explain_key(graph, "m", {}, tmp_path / "cache")
    with pytest.raises(UserError, match="no item 'z'"):
        explain_key(graph, "m", {}, tmp_path / "cache", "z")
    with pytest.raises(UserError, match="no node 'nope'"):
        explain_key(graph, "nope", {}, tmp_path / "cache")
    graph.set_param("sp", "values", {"a": 1.0, "b": 7.0, "c": 3.0})
    gf.run(graph, cache=tmp_path / "cache")
    graph.set_param("sp", "values", {"a": 1.0, "b": 8.0, "c": 3.0})
    assert explain_key(graph, "m", {}, tmp_path / "cache", "a").key is None  # sp must run first


def test_diff_names_changed_files_and_versions() -> None:
    old = KeyParts("t", 1, {"a": {"b": 1}}, {"path": "d1"}, None, {"x.y": 1}, {"path": "$inputs.p"},
                   {"path": [["/s/a.gltf", "f1"], ["/s/a.bin", "f2"]]})
    new = KeyParts("t", 2, {"a": {"b": 2}, "c": True}, {"path": "d2"}, None, {"x.y": 2}, {"path": "$inputs.p"},
                   {"path": [["/s/a.gltf", "f1"], ["/s/a.bin", "f3"]]})
    lines = diff_parts(old, new)
    assert "version of t: 1 -> 2" in lines
    assert "param 'a.b': 1 -> 2" in lines and "param 'c': (unset) -> true" in lines
    assert any(line.startswith("input 'path' (from $inputs.p): digest d1 -> d2; changed file(s): /s/a.bin")
               for line in lines)
    assert "nested node type 'x.y': 1 -> 2" in lines
    assert KeyParts.from_json(json.loads(json.dumps(new.to_json()))) == new


def test_cli_explain_after_a_file_edit(tmp_path: Path, cli) -> None:
    path = write_graph(tmp_path)
    f_line = "  f: {type: toy.slow, inputs: {x: s}}"
    path.write_text(GRAPH.replace(f_line, f_line + "\n  t: {type: toy.table, inputs: {path: $inputs.table}}")
                    .replace("outputs: {s: s, m: m, f: f}", "outputs: {s: s, m: m, f: f, t: t}"))
    assert cli("run", str(path), "-q").returncode == 0
    same = cli("explain", str(path), "t")
    assert same.returncode == 0, same.stderr
    assert "same key as the last run" in same.stdout and str(tmp_path / "table.txt") in same.stdout
    (tmp_path / "table.txt").write_text("two\n")
    edited = cli("explain", str(path), "t")
    assert edited.returncode == 0, edited.stderr
    assert "not in the cache: it would run" in edited.stdout
    assert f"changed file(s): {tmp_path / 'table.txt'}" in edited.stdout
    changed = cli("explain", str(path), "s", "--set", "s.params.factor=4")
    assert "param 'factor': 2.0 -> 4.0" in changed.stdout
    bad = cli("explain", str(path), "m")
    assert bad.returncode == 2 and "--item" in bad.stderr and "Traceback" not in bad.stderr
