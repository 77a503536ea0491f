"""The acceptance chain (`nodes.distill.acceptance.CHAIN_DEFAULTS`) runs exactly the shipped demo graph's params."""
from __future__ import annotations

from pathlib import Path

import graphflow as gf
from nodes.distill.acceptance import CHAIN_DEFAULTS

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def test_chain_defaults_are_the_demo_graphs_params() -> None:
    for name in ("demo_room.yaml", "texture_scene.yaml"):
        graph = gf.Graph.from_yaml(GRAPHS / name)
        for node, params in CHAIN_DEFAULTS.items():
            shipped = {k: v for k, v in graph.nodes[node].params.items() if k != "seed"}
            if name == "texture_scene.yaml" and node == "material":  # its references are photos: fitted, healed
                shipped.setdefault("fit", "none")
                shipped.setdefault("seamless", False)
            assert shipped == params, (name, node, shipped, params)
