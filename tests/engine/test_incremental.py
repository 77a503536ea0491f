from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from helpers.cli import cli_env
from helpers.toys import RUNS, toys

import graphflow as gf
from graphflow import Graph

YAML = """
graph: inc
nodes:
  c: {type: toy.const, params: {value: 3}}
  s: {type: toy.scale, inputs: {x: c}}
  sign: {type: toy.sign, inputs: {x: s}}
  after: {type: toy.scale, params: {factor: 10}, inputs: {x: sign}}
  other: {type: toy.const, params: {value: 7}}
  sp: {type: toy.split}
  m: {type: toy.map_square, inputs: {xs: sp}}
  t: {type: toy.total, inputs: {xs: m}}
outputs: {after: after, other: other, total: t}
"""


def ran(report: gf.RunReport) -> set[str]:
    return {e.node + (f"[{e.item}]" if e.item else "") for e in report.entries if e.status == "ran"}


def test_param_change_reruns_node_and_descendants_only(tmp_path: Path) -> None:
    g = Graph.from_yaml(YAML, registry=toys)
    first = gf.run(g, cache=tmp_path)
    assert len(ran(first.report)) == len(first.report.entries)
    g.set_param("s", "factor", 5.0)
    second = gf.run(g, cache=tmp_path)
    # sign(15) == sign(6): `after` keeps its key (early cutoff)
    assert ran(second.report) == {"s", "sign"}
    assert second.report.statuses()[("after", None)] == "cached"
    g.set_param("s", "factor", -1.0)
    third = gf.run(g, cache=tmp_path)
    assert ran(third.report) == {"s", "sign", "after"}
    assert torch.equal(third.outputs["after"], torch.full((4,), -10.0))


def test_one_item_change_reruns_that_item_only(tmp_path: Path) -> None:
    g = Graph.from_yaml(YAML, registry=toys)
    gf.run(g, cache=tmp_path)
    g.set_param("sp", "values", {"a": 1.0, "b": 9.0, "c": 3.0})
    rep = gf.run(g, cache=tmp_path).report
    assert ran(rep) == {"sp", "m[b]", "t"}
    assert rep.statuses()[("m", "a")] == "cached" and rep.statuses()[("m", "c")] == "cached"


def test_noop_rerun_in_process_and_in_a_new_process(tmp_path: Path) -> None:
    g = Graph.from_yaml(YAML, registry=toys)
    tiers = gf.open_cache(tmp_path)
    gf.run(g, cache=tiers)
    RUNS.clear()
    again = gf.run(g, cache=tiers)
    assert RUNS == [] and {e.status for e in again.report.entries} == {"cached"}
    script = (
        "from helpers.toys import toys, RUNS\n"
        "import graphflow as gf\n"
        "g = gf.Graph.from_yaml(%r, registry=toys)\n"
        "r = gf.run(g, cache=%r)\n"
        "print(sorted({e.status for e in r.report.entries}), RUNS, r.outputs['total'].item())\n"
    ) % (YAML, str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=cli_env())
    assert out.stdout.strip() == "['cached'] [] " + str(again.outputs["total"].item())


def test_mutating_node_does_not_poison_the_cache(tmp_path: Path) -> None:
    y = """
graph: mut
nodes:
  c: {type: toy.const, params: {value: 2}}
  bad: {type: toy.mutate, inputs: {x: c}}
  good: {type: toy.scale, params: {factor: 1}, inputs: {x: c}}
outputs: {bad: bad, good: good}
"""
    g = Graph.from_yaml(y, registry=toys)
    tiers = gf.open_cache(tmp_path)
    res = gf.run(g, cache=tiers)
    assert torch.equal(res.outputs["good"], torch.full((4,), 2.0))
    assert torch.equal(res.outputs["bad"], torch.full((4,), 200.0))
    # what the cache hands the next consumer is still the original value
    g.set_param("good", "factor", 3.0)
    res2 = gf.run(g, cache=tiers)
    assert torch.equal(res2.outputs["good"], torch.full((4,), 6.0))
    fresh = gf.run(g, cache=gf.open_cache(tmp_path))  # from disk, a new memory tier
    assert torch.equal(fresh.outputs["good"], torch.full((4,), 6.0))


def test_events_and_report_fields(tmp_path: Path) -> None:
    events: list[gf.Event] = []
    g = Graph.from_yaml(YAML, registry=toys)
    res = gf.run(g, cache=tmp_path, listeners=[events.append])
    kinds = {e.kind for e in events}
    assert {"run_start", "node_start", "node_end", "run_end"} <= kinds
    d = res.report.to_dict()
    assert set(d) >= {"nodes", "total_seconds"}
    assert all({"node", "item", "status", "seconds", "key"} <= set(n) for n in d["nodes"])
    assert {n["item"] for n in d["nodes"] if n["node"] == "m"} == {"a", "b", "c"}
