"""`ctx.note(text)`: a node marks one run or item (e.g. "projected only", issue 14 item 1) and report.json
carries it as the entry's `note`, on the run that made it and on every later run that reads it from the
cache (memory or disk); entries without a note keep their old shape."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

import graphflow as gf
from graphflow import Context, Graph, Keyed, Node, Registry
from graphflow.cache import DiskCache, MemoryCache, TieredCache

notes = Registry(plugins=False)


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, float] = {"a": 1.0, "b": -2.0, "c": 3.0}


@notes.register
class NoteSplit(Node):
    name = "notes.split"
    Params = SplitParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        return Keyed({k: torch.full((2,), v) for k, v in self.params.values.items()})


@notes.register
class NoteAbs(Node):
    """Takes a fallback (abs) for negative items and says so."""

    name = "notes.abs"
    map_over = "xs"

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        if bool((xs < 0).any()):
            ctx.log.warning("%s: item '%s' is negative: abs taken", ctx.node_id, ctx.item)
            ctx.note("negative: abs taken")
        return xs.abs()


GRAPH = """
graph: noted
nodes:
  sp: {type: notes.split}
  ab: {type: notes.abs, inputs: {xs: sp}}
outputs: {ab: ab}
"""


def _entries(report: gf.RunReport) -> dict[tuple[str, str | None], dict]:
    return {(e["node"], e["item"]): e for e in report.to_dict()["nodes"]}


def test_note_is_on_the_item_entry_only(tmp_path: Path) -> None:
    result = gf.run(Graph.from_yaml(GRAPH, registry=notes), cache=tmp_path)
    entries = _entries(result.report)
    assert entries[("ab", "b")]["note"] == "negative: abs taken"
    assert entries[("ab", "b")]["status"] == "ran"
    assert "note" not in entries[("ab", "a")] and "note" not in entries[("sp", None)]
    assert sum("item 'b' is negative" in w for w in result.report.warnings) == 1
    json.loads(json.dumps(result.report.to_dict()))  # serialisable as report.json


def test_cached_item_keeps_its_note_from_memory_and_disk(tmp_path: Path) -> None:
    graph = Graph.from_yaml(GRAPH, registry=notes)
    first = gf.run(graph, cache=tmp_path)
    assert _entries(first.report)[("ab", "b")]["status"] == "ran"
    for cache in (tmp_path, TieredCache(MemoryCache(), DiskCache(tmp_path))):  # disk only; then disk behind memory
        again = _entries(gf.run(graph, cache=cache).report)
        assert again[("ab", "b")]["status"] == "cached"
        assert again[("ab", "b")]["note"] == "negative: abs taken"
        assert "note" not in again[("ab", "a")]
    memory = TieredCache(MemoryCache(), None)
    gf.run(graph, cache=memory)
    from_memory = _entries(gf.run(graph, cache=memory).report)
    assert (from_memory[("ab", "b")]["status"], from_memory[("ab", "b")]["note"]) == ("cached", "negative: abs taken")


def test_entry_without_note_keeps_old_bytes(tmp_path: Path) -> None:
    graph = Graph.from_yaml("graph: plain\nnodes:\n  sp: {type: notes.split, params: {values: {a: 1.0}}}\n"
                            "outputs: {sp: sp}\n", registry=notes)
    gf.run(graph, cache=tmp_path)
    metas = [json.loads(p.read_text()) for p in tmp_path.rglob("entry.json")]
    assert metas and all("notes" not in meta for meta in metas)
