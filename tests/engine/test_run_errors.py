"""Run-time errors keep their structure in report.json, events and `RunFailed` (issue 16, item 6),
and a value gone from the cache is computed again through the normal submit path (item 1)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph
from graphflow.cache import MemoryCache

FAILING = """
graph: failing
nodes:
  c: {type: toy.const}
  sp: {type: toy.split}
  f: {type: toy.fail, params: {user: true}, inputs: {x: c}}
  bug: {type: toy.fail, params: {user: false}, inputs: {x: c}}
  one: {type: raytoy.fail_one, params: {bad_item: b}, inputs: {xs: sp}}
outputs: {f: f, bug: bug, one: one}
"""


def test_errors_are_structured_in_events_report_and_exception(tmp_path: Path) -> None:
    events: list[gf.Event] = []
    with pytest.raises(gf.RunFailed) as info:
        gf.run(Graph.from_yaml(FAILING, registry=toys), cache=tmp_path, listeners=[events.append])
    exc = info.value
    assert not exc.user_error  # one of them is a bug
    by_node = {(e.node, e.item): e for e in exc.errors}
    user = by_node[("f", None)]
    assert (user.kind, user.node_type, user.message, user.hint) == ("user", "toy.fail", "this input is not acceptable",
                                                                    "use another one")
    bug = by_node[("bug", None)]
    assert (bug.kind, bug.exception, bug.message) == ("bug", "ZeroDivisionError", "bug")
    assert "Traceback" in (bug.traceback or "") and "traceback" not in bug.to_dict()
    item = by_node[("one", "b")]
    assert (item.kind, item.item, item.hint) == ("user", "b", "remove it from the inputs")
    # the one-line messages are unchanged
    assert str(user) == "node 'f': this input is not acceptable (use another one)"
    assert str(bug) == "node 'bug' failed with ZeroDivisionError: bug"
    assert str(item) == "node 'one' item 'b': item b is not acceptable (remove it from the inputs)"
    failed_events = {(e.node, e.item): e.data for e in events if e.kind == "node_end" and e.data["status"] == "failed"}
    assert failed_events[("one", "b")]["error"] == item.to_dict()
    assert failed_events[("bug", None)]["error"]["exception"] == "ZeroDivisionError"
    run_end = [e for e in events if e.kind == "run_end"][0]
    assert len(run_end.data["errors"]) == 3
    entries = {(e["node"], e["item"]): e for e in exc.report.to_dict()["nodes"]}
    assert entries[("f", None)]["error"] == user.to_dict() and "error" not in entries[("c", None)]
    assert entries[("one", "a")]["status"] == "ran" and "error" not in entries[("one", "a")]


def test_cli_report_json_has_the_structure_and_stderr_the_same_line(tmp_path: Path, cli) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(FAILING.replace("  bug: {type: toy.fail, params: {user: false}, inputs: {x: c}}\n", "")
                     .replace("bug: bug, ", ""))
    res = cli("run", str(graph), "-q", "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "node 'f': this input is not acceptable (use another one)" in res.stderr
    assert "node 'one' item 'b': item b is not acceptable (remove it from the inputs)" in res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    errors = {(e["node"], e["item"]): e["error"] for e in report["nodes"] if e["status"] == "failed"}
    assert errors[("one", "b")] == {"message": "item b is not acceptable", "kind": "user", "node": "one",
                                    "node_type": "raytoy.fail_one", "item": "b", "hint": "remove it from the inputs"}
    assert errors[("f", None)]["hint"] == "use another one"


CHAIN = """
graph: chain
nodes:
  c: {type: toy.const, params: {value: 2}}
  s: {type: toy.scale, params: {factor: 3}, inputs: {x: c}}
outputs: {s: s}
"""


def test_value_gone_from_the_cache_is_recomputed_and_reported(tmp_path: Path) -> None:
    graph = Graph.from_yaml(CHAIN, registry=toys)
    tiers = gf.open_cache(tmp_path)
    gf.run(graph, cache=tiers)
    # the disk tier has verified `c` in this process; then its data goes bad and the memory tier is emptied
    tiers.memory = MemoryCache()
    for data in tmp_path.glob("v1/*/*/data.safetensors"):
        data.write_bytes(b"garbage")
    graph.set_param("s", "factor", 5.0)
    events: list[gf.Event] = []
    result = gf.run(graph, cache=tiers, listeners=[events.append])
    assert torch.equal(result.outputs["s"], torch.full((4,), 10.0))
    entries = {e.node: e for e in result.report.entries}
    assert entries["c"].status == "ran" and "recomputed" in (entries["c"].message or "")
    assert [(e.kind, e.node) for e in events if e.data.get("recompute")] == [("node_start", "c"), ("node_end", "c")]
    assert len(result.report.entries) == 2  # the cached entry of `c` was replaced, not duplicated
