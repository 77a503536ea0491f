"""What a texturing run will make and cost, known before `texture.project` starts (issue 23).

Every instance's atlas side is `project.atlas_side_of(surface area, UV area)`:
the same function `texture.project` uses, fed the two areas summed over the
instance's faces (no charts needed: milliseconds for a whole scene). The
texels of all atlases are the run's size: every stage after the projection
(distillation, super-resolution, BRDF, export) works per texel of them.

Time: per node type of the run (this node and the ones after it), seconds =
`fixed` per instance + `per_mtexel` per million atlas texels, times steps over
the measured steps where the node has `steps`. The constants (`RATES`, source
in `RATES_SOURCE`) come from `bench/cost_rates.py`: the demo room's run
through the shipped graph, each node's seconds over the texels it served.
Node types without a rate count nothing (the line says how many). The
estimate is an order of magnitude, good enough to tell seconds from hours.

Budget: above `max_texels` the run stops before the projection with exit 2,
naming the largest instances and what to change: the unit (a centimetre file
read as metres has 10,000 times the area), `texels_per_metre` or `max_size`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphflow import Keyed, UserError
from nodes.types import Instance, Scene

from .project import ProjectionSettings, atlas_side_of, wanted_side

# 16 full-size (1024²) atlases: about 50 min of the shipped texture_scene graph and 8 min of
# preview_projection on 2 cores (RATES); a centimetre scene read as metres asks for far more
# (RecursiveSkeletons: 84 x 1024² = 88 M texels, hours).
DEFAULT_MAX_TEXELS = 16 * 1024 * 1024
RATES_SOURCE = ("bench/cost_rates.py on graphs/demo_room.yaml (7 instances, 1.44 M texels), 2 shared cores, "
                "2026-12-07: seconds are CPU seconds over threads; fixed costs from 84 instances of 64² "
                "(preview_projection on tests' skeletons_glb)")
# node type -> (seconds per instance, seconds per million atlas texels, steps they were measured at or None)
RATES: dict[str, tuple[float, float, int | None]] = {
    "texture.project": (0.03, 2.9, None),
    "distill.semantic": (0.0, 23.3, 30),
    "distill.pixel": (0.0, 34.1, 20),
    "superres.anchored": (0.0, 78.0, 20),
    "brdf.decompose": (0.07, 11.8, None),
    "export.gltf": (0.0, 8.2, None),
    "export.usd": (0.0, 7.7, None),
    "export.materialx": (0.0, 8.1, None),
    "preview.render": (0.0, 6.4, None),
}
TOO_SMALL_SIDE = 2.0  # an instance under this many texels across at the density: the scene is tiny for it
TOO_LARGE_FACTOR = 2.0  # wanted side over max_size by this factor: the textures are that much coarser


@dataclass(frozen=True)
class InstanceCost:
    name: str
    surface_m2: float
    wanted: float  # atlas side the density asks for, before rounding and clamping
    side: int  # the atlas side texture.project will use

    @property
    def texels(self) -> int:
        return self.side * self.side


def face_areas(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(surface area m², UV area) of every face of the scene, float64."""
    faces = scene.faces.numpy()
    p = scene.positions.numpy().astype(np.float64)[faces]
    uv = scene.uvs.numpy().astype(np.float64)[faces]
    surface = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    return surface, 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def instance_costs(scene: Scene, instances: Keyed[Instance], settings: ProjectionSettings) -> list[InstanceCost]:
    """Each instance's surface, wanted and actual atlas side (texture.project's rule), in instance order."""
    surface, uv = face_areas(scene)
    out = []
    for name, instance in instances.items():
        mask = instance.face_mask.numpy() if isinstance(instance.face_mask, torch.Tensor) else instance.face_mask
        s, u = float(surface[mask].sum()), float(uv[mask].sum())
        wanted = wanted_side(s, u, settings.texels_per_metre)
        out.append(InstanceCost(name, s, wanted, atlas_side_of(s, u, settings)))
    return out


def estimated_seconds(costs: list[InstanceCost], node_types: list[tuple[str, Any]]) -> tuple[float, list[str]]:
    """(seconds, node types without a measured rate) for the nodes `node_types` ((type, params) pairs)."""
    texels = sum(c.texels for c in costs) / 1e6
    seconds, unknown = 0.0, []
    for node_type, params in node_types:
        rate = RATES.get(node_type)
        if rate is None:
            unknown.append(node_type)
            continue
        fixed, per_mtexel, steps = rate
        factor = getattr(params, "steps", steps) / steps if steps else 1.0
        seconds += (fixed * len(costs) + per_mtexel * texels) * factor
    return seconds, unknown


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_line(costs: list[InstanceCost], seconds: float, unknown: list[str]) -> str:
    """One line: instances, total texels, the largest instances, the time estimate."""
    total = sum(c.texels for c in costs)
    largest = sorted(costs, key=lambda c: (-c.texels, c.name))[:3]
    biggest = ", ".join(f"{c.name} {c.side}² ({c.surface_m2:.3g} m²)" for c in largest)
    rest = f"; {len(unknown)} later node type(s) not counted" if unknown else ""
    return (f"{len(costs)} instance(s), {total / 1e6:.2f} M atlas texels (largest: {biggest}); about "
            f"{_duration(seconds)} for the texturing nodes on 2 CPU cores{rest}")


def density_warnings(costs: list[InstanceCost], settings: ProjectionSettings) -> list[str]:
    """Lines for a scene too small or too large for the texel density, each saying what to set."""
    lines = []
    tiny = [c for c in costs if c.wanted < TOO_SMALL_SIDE]
    if tiny:
        lines.append(
            f"{len(tiny)} of {len(costs)} instance(s) are under {TOO_SMALL_SIDE:g} texels across at "
            f"texels_per_metre={settings.texels_per_metre:g} (e.g. '{tiny[0].name}', {tiny[0].surface_m2:.2g} m²): "
            f"the scene is too small for this density; their atlases are clamped to min_size "
            f"{settings.min_size} and a swatch at its real size shows as a flat colour. If the file is not in "
            "metres set scene.params.units (or scale); for a miniature raise texels_per_metre")
    large = [c for c in costs if c.wanted > TOO_LARGE_FACTOR * settings.max_size]
    if large:
        worst = max(large, key=lambda c: c.wanted)
        lines.append(
            f"{len(large)} of {len(costs)} instance(s) need atlases over max_size {settings.max_size} at "
            f"texels_per_metre={settings.texels_per_metre:g} (e.g. '{worst.name}': {worst.wanted:.0f} texels "
            f"across, {worst.surface_m2:.3g} m²), so their textures are up to {worst.wanted / settings.max_size:.0f}x "
            "coarser: the scene is too large for this density. If the file is not in metres set "
            "scene.params.units; otherwise lower texels_per_metre or raise max_size (cost grows with its square)")
    return lines


def check_budget(costs: list[InstanceCost], settings: ProjectionSettings, max_texels: int, seconds: float,
                 node: str | None = None) -> None:
    """Raise `UserError` when the atlases hold more than `max_texels` texels: what it would make, what to change."""
    total = sum(c.texels for c in costs)
    if total <= max_texels:
        return
    largest = sorted(costs, key=lambda c: (-c.texels, c.name))[:3]
    named = ", ".join(f"'{c.name}' {c.side}² for {c.surface_m2:.3g} m²" for c in largest)
    raise UserError(
        f"the run would make {total / 1e6:.1f} M atlas texels over {len(costs)} instance(s) (largest: {named}), "
        f"about {_duration(seconds)} on 2 CPU cores: over the budget max_texels = {max_texels / 1e6:.1f} M",
        node=node, param="max_texels",
        hint=f"if the scene is not in metres set scene.params.units (cm, mm...); or lower texels_per_metre "
             f"(now {settings.texels_per_metre:g}) or max_size (now {settings.max_size}); or raise the budget "
             "with --max-texels N")
