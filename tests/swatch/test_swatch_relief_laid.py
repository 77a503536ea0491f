"""The laid height becomes tangent-space normals that stand out the right way on every face (issue 21 item 3)."""
from __future__ import annotations

import math

import torch

import nodes.catalog  # noqa: F401
from graphflow.testing import make_context
from nodes.brdf.decompose import unlit_maps
from nodes.brdf.materials import material_prior
from nodes.brdf.normals import tangent_to_world
from nodes.brdf.texels import texel_geometry
from nodes.scene.nodes import SegmentParts
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.types import SwatchMaterial


def _bumps(n: int = 64) -> torch.Tensor:
    """[1, n, n] metres: bumps of both orientations (a tileable product of sines), 3 mm high."""
    t = torch.arange(n) / n * 2 * math.pi
    return 0.003 * (torch.sin(2 * t)[None, :] * torch.cos(3 * t)[:, None] + 0.5 * torch.sin(t)[:, None])[None]


def test_laid_height_normals_agree_with_the_height_on_every_face_of_the_box() -> None:
    """For neighbouring texels p, q of a face, h(q) - h(p) must match the slope the world normal shows:
    -tilt / (n·N) · (P_q - P_p). A wrong sign of the tangent or bitangent flips it on some faces."""
    scene = shapes_scene()
    instance = SegmentParts({}).run(make_context("segment"), scene)["cabinet"]
    reference = shapes_references()["cabinet"]
    height = _bumps()
    material = SwatchMaterial(albedo=reference.images[0].float()[:, :64, :64], height=height, roughness=None,
                              metallic=None, size=0.4, mode="tile", material="stone")
    laid = project_instance(scene, instance.face_mask, material, ProjectionSettings(texels_per_metre=96))
    geometry = texel_geometry(scene, instance.face_mask, tuple(laid.image.shape[-2:]), within=laid.mask)
    maps = unlit_maps(laid.image, geometry, torch.ones(geometry.index.numel()), material_prior("stone"), "stone",
                      height=laid.height)
    normal_ts = maps.normal.reshape(3, -1).T[geometry.index]
    world = tangent_to_world(normal_ts, geometry)
    h, w = geometry.size
    where = torch.full((h * w,), -1, dtype=torch.long)
    where[geometry.index] = torch.arange(geometry.index.numel())
    faces_checked = 0
    for axis in range(3):
        for sign in (-1.0, 1.0):
            on_face = geometry.normal[:, axis] * sign > 0.9
            if int(on_face.sum()) < 50:
                continue
            predicted, measured = [], []
            for step in (1, w):  # right and down neighbours
                p = geometry.index[on_face]
                q = where[(p + step).clamp_max(h * w - 1)]
                ok = (q >= 0) & (p + step < h * w)
                ok[ok.clone()] &= on_face[q[ok]]
                pi, qi = where[p[ok]], q[ok]
                n = geometry.normal[pi]
                tilt = world[pi] - (world[pi] * n).sum(-1, keepdim=True) * n
                slope = -tilt / (world[pi] * n).sum(-1, keepdim=True)
                predicted.append((slope * (geometry.position[qi] - geometry.position[pi])).sum(-1))
                measured.append(laid.height[0].reshape(-1)[geometry.index[qi]] - laid.height[0].reshape(-1)[p[ok]])
            pred, meas = torch.cat(predicted), torch.cat(measured)
            corr = float(torch.corrcoef(torch.stack([pred, meas]))[0, 1])
            assert corr > 0.9, (axis, sign, corr)
            faces_checked += 1
    assert faces_checked >= 5
    assert maps.height is not None and maps.info["relief"] == "laid height"
