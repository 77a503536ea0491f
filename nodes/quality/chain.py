"""The shipped texturing chain, run as a graph: what the acceptance tests and benches measure.

`run_chain` loads a shipped graph (by default `graphs/demo_room.yaml`), applies param overrides (tests
pass fewer steps), keeps only the texturing nodes it is asked for and their ancestors (no export, no
report page), and runs it through `graphflow.run` on an in-memory cache, so every texture is a graph
run's: the same seeds, thread counts and node code as `graphflow run`. There is no second, hand-written
copy of the chain to keep equal to the YAML.

Scenes other than the graph's own (the shapes scene, SheenChair with its own swatches, a floor laid with a
photo) come in as values: each one given (`scene`, `instances`, `references`) takes the place of the graph
node that makes it (`scene`, `segment`, `bind`), which becomes a graph input of type `any`; every link
from that node reads the input instead. The graph's other nodes and params are unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import graphflow as gf
from graphflow.graph import GraphInput, InputRef, Link
from graphflow.report import RunReport
from nodes.types import Instance, PBRMaps, Reference, Scene, SwatchMaterial, TextureMap, Views

DEMO_GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "demo_room.yaml"
# the texturing nodes of the shipped graphs, in chain order
TEXTURING = ("material", "views", "project", "semantic", "pixel", "superres", "brdf")
# graph input name -> the node whose output a given value replaces; `bind` first: it reads `scene.references`
GIVEN_NODES = {"references": "bind", "instances": "segment", "scene": "scene"}
# the shipped params with fewer views, steps and AO rays, to fit CI (acceptance tests, benches' `--steps fewer`)
FEWER_STEPS: dict[str, dict[str, Any]] = {"views": {"max_count": 8}, "semantic": {"steps": 30}, "pixel": {"steps": 20},
                                          "superres": {"steps": 10}, "brdf": {"ao_rays": 8}}


@dataclass
class ChainResult:
    """One instance's textures: `start` (texture.project), `final` (brdf.decompose), the run's views,
    and `stages`: swatch.material's SwatchMaterial and each distill/superres stage's TextureMap."""

    start: TextureMap
    final: PBRMaps
    views: Views
    stages: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChainRun:
    """A run of the chain: its scene, instances and references (given or made by the graph), the
    per-instance results and the run's report."""

    scene: Scene
    instances: gf.Keyed[Instance]
    references: gf.Keyed[Reference]
    results: dict[str, ChainResult]
    report: RunReport

    def density(self, name: str, atlas: torch.Tensor) -> float:
        """Texels per metre of `atlas` (`[C, S, S]`, any stage's map of instance `name`): the density of
        texture.project's world scale (`TextureMap.scale`), times the atlas's side over the projection's
        (super-resolution doubles it; the same as the stage's own `scale.texels_per_metre`)."""
        start = self.results[name].start
        return start.scale.texels_per_metre * atlas.shape[-1] / start.image.shape[-1]


def chain_graph(params: Mapping[str, Mapping[str, Any]] | None = None, given: Sequence[str] = (),
                through: Sequence[str] = TEXTURING, graph: Path = DEMO_GRAPH) -> gf.Graph:
    """The shipped `graph` with `params` overridden (node id -> {param: value}), the nodes of the `given`
    values (names of `GIVEN_NODES`) turned into graph inputs, cut to `through` and their ancestors; every
    kept node of the chain is a graph output (named by its node id; the scene node's scene as `scene`)."""
    chain = gf.Graph.from_yaml(graph)
    for node, values in (params or {}).items():
        for key, value in values.items():
            chain.set_param(node, key, value)
    for name, node in GIVEN_NODES.items():
        if name in given:
            feed_from_input(chain, node, name)
    sub = chain.subgraph(list(through))
    sub.outputs = {nid: Link(nid) for nid in sub.nodes if nid != "scene"}
    if "scene" in sub.nodes:
        sub.outputs["scene"] = Link("scene", "scene")
    return sub


def feed_from_input(graph: gf.Graph, node_id: str, name: str) -> None:
    """Replace node `node_id` by graph input `name` (type any): every link from it reads the input."""
    for nid, spec in graph.nodes.items():
        for port, source in list(spec.inputs.items()):
            if isinstance(source, Link) and source.node == node_id:
                graph.connect(InputRef(name), nid, port)
    graph.inputs[name] = GraphInput(type="any", doc=f"in place of node '{node_id}'")
    graph.remove(node_id)


def run_chain(params: Mapping[str, Mapping[str, Any]] | None = None, *, scene: Scene | None = None,
              instances: gf.Keyed[Instance] | None = None, references: gf.Keyed[Reference] | None = None,
              graph: Path = DEMO_GRAPH) -> ChainRun:
    """Run the shipped chain through brdf.decompose (module docstring) and collect each instance's
    textures. Give `scene` with `references` (the graph's scene node also makes the references its
    `bind` reads); without `instances` the graph segments the scene. Raises `graphflow.RunFailed`
    when a node fails."""
    values = {"scene": scene, "instances": instances, "references": references}
    given = {name: value for name, value in values.items() if value is not None}
    if "scene" in given and "references" not in given:
        raise ValueError("run_chain: a given scene needs its references (the graph's scene node makes both)")
    chain = chain_graph(params, tuple(given), TEXTURING, graph)
    out = gf.run(chain, given, cache=gf.open_cache(disk=False), outputs=list(chain.outputs))
    # a value not given is the graph output of the node that makes it (named by its node id)
    values = {name: given[name] if name in given else out.outputs[node] for name, node in GIVEN_NODES.items()}
    per_instance = [node for node in TEXTURING if node not in ("views", "project", "brdf")]
    results = {name: ChainResult(start=out.outputs["project"][name], final=out.outputs["brdf"][name],
                                 views=out.outputs["views"],
                                 stages={node: out.outputs[node][name] for node in per_instance})
               for name in values["references"]}
    return ChainRun(scene=values["scene"], instances=values["instances"], references=values["references"],
                    results=results, report=out.report)
