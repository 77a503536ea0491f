"""The acceptance scenes, each run through the shipped chain (`chain.run_chain`).

- `demo`: the demo room, the shipped `graphs/demo_room.yaml` as it is (its own scene, segments, references);
- `shapes`: the shapes scene (`nodes.quality.shapes`: a wood box, a striped cylinder, a checker floor, a
  dotted sphere, a noisy plate) with its procedural swatches, segmented by the graph;
- `chair`: SheenChair (from the shared assets folder) with swatches cut from its own albedo textures at
  the size one image spans on the chair (`chair_swatches`), its fabric and wood instances only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from graphflow import Keyed
from graphflow.testing import make_context
from nodes.scene.images import load_image
from nodes.scene.loader import load_scene
from nodes.scene.nodes import SegmentParts
from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.types import Instance, Reference, Scene

from .chain import ChainRun, run_chain

SCENES = ("shapes", "demo", "chair")
ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"  # ../shared/assets beside the repo
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"
CHAIR_SWATCHES = (("SheenChair_fabric", "chair_fabric_albedo.png"), ("SheenChair_wood", "chair_wood_albedo.png"))


def chair_swatches(scene: Scene, instances: Mapping[str, Instance]) -> Keyed[Reference]:
    """SheenChair's fabric and wood albedo PNGs as swatches at the size one image spans on the chair."""
    refs = {}
    for name, png in CHAIR_SWATCHES:
        faces = scene.faces[instances[name].face_mask]
        uv = scene.source_uvs[faces].double()
        p = scene.positions[faces].double()
        area = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]).norm(dim=1).sum() / 2
        duv = uv[:, 1:] - uv[:, :1]
        uv_area = (duv[:, 0, 0] * duv[:, 1, 1] - duv[:, 0, 1] * duv[:, 1, 0]).abs().sum() / 2
        size = math.sqrt(float(area / uv_area))  # metres one texture repeat spans (uniform mapping)
        info = next(i for i in scene.part_info if i["node"] == name)
        factor = torch.tensor(info.get("base_color_factor", [1, 1, 1])[:3])[:, None, None]
        image = load_image(ASSETS / "SheenChair" / png) * factor
        refs[name] = Reference(images=(image.clamp(0, 1).contiguous(),), material=instances[name].material, size=size)
    return Keyed(refs)


def run_scene(which: str, params: Mapping[str, Mapping[str, Any]] | None = None) -> ChainRun:
    """The chain on one of `SCENES` (module docstring) with `params` overriding the shipped graph's."""
    if which == "demo":
        return run_chain(params)
    if which == "shapes":
        return run_chain(params, scene=shapes_scene(), references=shapes_references())
    if which != "chair":
        raise ValueError(f"unknown acceptance scene {which!r} (one of {', '.join(SCENES)})")
    scene = load_scene(CHAIR)
    # the chair's instances are segmented here: its swatches are cut by their faces before the run
    instances = SegmentParts({"by": "node"}).run(make_context("segment"), scene)
    refs = chair_swatches(scene, instances)
    return run_chain(params, scene=scene, instances=Keyed({name: instances[name] for name in refs}), references=refs)
