"""`Node.estimate` (issue 23): a node says what its run will cost as soon as the inputs it names are ready,
before the scheduler starts any other node (even one earlier in the topological order); raising `UserError`
there stops the run with every unstarted node skipped; `unkeyed_params` (a budget) stay out of the cache key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel, ConfigDict

import graphflow as gf
from graphflow import Context, Graph, Keyed, Node, Registry, RunFailed, UserError
from graphflow.progress import Event

toys = Registry(plugins=False)
ORDER: list[str] = []


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sizes: dict[str, int] = {"a": 3, "b": 5}


@toys.register
class Split(Node):
    name = "est.split"
    Params = SplitParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        ORDER.append(ctx.node_id)
        return Keyed({k: torch.ones(v) for k, v in self.params.sizes.items()})


@toys.register
class Expensive(Node):
    """Unrelated work that the topological order puts before `Costly`."""

    name = "est.expensive"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        ORDER.append(ctx.node_id)
        return torch.zeros(1)


class CostlyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: int = 100


@toys.register
class Costly(Node):
    name = "est.costly"
    Params = CostlyParams
    map_over = "xs"
    estimate_inputs = ("xs",)
    unkeyed_params = ("budget",)

    def estimate(self, inputs: dict[str, Any], downstream: dict[str, tuple[str, BaseModel]]) -> str:
        ORDER.append("estimate")
        total = sum(int(x.numel()) for x in inputs["xs"].values())
        if total > self.params.budget:
            raise UserError(f"{total} elements, over the budget {self.params.budget}", param="budget")
        return f"{total} elements; then {sorted(t for t, _ in downstream.values())}"

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        ORDER.append(ctx.node_id)
        return xs * 2


@toys.register
class Total(Node):
    name = "est.total"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        return torch.stack([x.sum() for x in xs.values()])


GRAPH = """
graph: estimated
nodes:
  split: {type: est.split}
  first: {type: est.expensive, inputs: {xs: split}}
  costly: {type: est.costly, params: {budget: BUDGET}, inputs: {xs: split}}
  total: {type: est.total, inputs: {xs: costly}}
outputs: {total: total, first: first}
"""


def _graph(budget: int) -> Graph:
    return Graph.from_yaml(GRAPH.replace("BUDGET", str(budget)), registry=toys)


def test_the_estimate_comes_before_any_other_node_and_is_reported(tmp_path: Path) -> None:
    ORDER.clear()
    events: list[Event] = []
    result = gf.run(_graph(100), cache=tmp_path, listeners=[events.append])
    assert ORDER[:3] == ["split", "estimate", "first"]  # `first` is earlier in the order than `costly`
    assert result.report.to_dict()["plan"] == ["costly: 8 elements; then ['est.total']"]
    assert [e.data["line"] for e in events if e.kind == "estimate"] == ["8 elements; then ['est.total']"]


def test_over_budget_stops_the_run_and_the_budget_is_not_in_the_key(tmp_path: Path) -> None:
    ORDER.clear()
    with pytest.raises(RunFailed) as failed:
        gf.run(_graph(4), cache=tmp_path)
    assert ORDER == ["split", "estimate"]  # nothing else started
    statuses = failed.value.report.statuses()
    assert statuses[("costly", None)] == "failed"
    assert statuses[("first", None)] == statuses[("total", None)] == "skipped"
    assert failed.value.user_error and "over the budget 4" in str(failed.value)
    gf.run(_graph(100), cache=tmp_path)
    again = gf.run(_graph(1000), cache=tmp_path).report.statuses()  # another budget: the same keys
    assert again[("costly", "a")] == again[("costly", "b")] == again[("total", None)] == "cached"
