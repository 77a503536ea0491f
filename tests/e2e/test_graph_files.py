"""Every shipped graph validates, and the three texturing graphs honour the documented --set names."""
from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import GRAPHS, graphflow_cli

import graphflow as gf

TEXTURING = ["demo_room.yaml", "texture_scene.yaml", "texture_scene_sd.yaml"]
NODE_IDS = {"scene", "segment", "bind", "material", "views", "project", "semantic", "pixel", "superres", "brdf", "export",
            "export_usd", "export_mtlx", "preview"}
OUTPUTS = {"asset", "usdz", "mtlx", "preview"}
KNOBS = ["semantic.params.steps=7", "pixel.params.steps=7", "superres.params.steps=7", "brdf.params.steps=7",
         "project.params.texels_per_metre=64", "views.params.count=3", "views.params.resolution=64", "views.params.texels_per_metre=0", "*.params.seed=5"]


@pytest.mark.parametrize("name", sorted(p.name for p in GRAPHS.glob("*.yaml")))
def test_shipped_graph_validates_and_round_trips(name: str) -> None:
    graph = gf.Graph.from_yaml(GRAPHS / name).check()
    assert gf.Graph.from_yaml(graph.to_yaml()) == graph


@pytest.mark.parametrize("name", TEXTURING)
def test_texturing_graphs_share_node_ids_and_knobs(name: str, tmp_path: Path) -> None:
    graph = gf.Graph.from_yaml(GRAPHS / name)
    assert set(graph.nodes) == NODE_IDS and set(graph.outputs) == OUTPUTS
    args = [a for knob in KNOBS for a in ("--set", knob)]
    res = graphflow_cli("validate", str(GRAPHS / name), *args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    from graphflow.cli import apply_overrides

    apply_overrides(graph, KNOBS)
    seeded = [nid for nid, spec in graph.nodes.items() if "seed" in graph.node_class(nid).Params.model_fields]
    assert len(seeded) >= 5 and all(graph.nodes[n].params["seed"] == 5 for n in seeded)
    assert graph.nodes["semantic"].params["steps"] == 7 and graph.nodes["views"].params["resolution"] == 64
