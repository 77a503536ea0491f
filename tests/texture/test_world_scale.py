"""Issue 24 item 1: a texture's real-world scale is a typed value (`WorldScale`) that travels with it.

texture.project sets `TextureMap.scale`; distillation passes it on, super-resolution makes it `factor` times
finer, brdf.decompose hands it to `PBRMaps.scale`. The cache stores it (codec round trip, and a texture's
digest changes with it), and `nodes.texture.world` lays the swatch again from it: the ideal texture it gives
is texture.project's own, and the detail-transfer projections are the ones super-resolution made before.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import nodes.catalog  # noqa: F401
from graphflow.codec import decode, encode
from graphflow.fingerprint import fingerprint
from graphflow.testing import make_context
from nodes.brdf.nodes import Decompose
from nodes.distill.nodes import DistillPixel, DistillSemantic, SuperResAnchored
from nodes.render.nodes import SampleViews
from nodes.scene.demo_room import DemoInstance, box, instance_mesh
from nodes.scene.loader import assemble_scene
from nodes.scene.segment import segment_scene
from nodes.texture.nodes import ProjectParams, TextureProject
from nodes.texture.project import project_instance
from nodes.quality.shapes import stripes
from nodes.texture.world import ideal_texture, instance_charts, phase_of_fraction, project, swatch_at, wanted_side
from nodes.types import PBRMaps, ProjectionSettings, Reference, TextureMap, WorldScale

DENSITY = 48.0


@pytest.fixture(scope="module")
def scene_and_instance():
    crate = DemoInstance("crate", "wood", "crate", "", "", tuple(box((0.0, 0.3, 0.0), (0.6, 0.6, 0.6))),
                         swatch_size=0.3)
    scene = assemble_scene([instance_mesh(crate)], unwrap_mode="never")
    return scene, segment_scene(scene)["crate"]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(images=(stripes(64, periods=4),), material="wood", size=0.3)


@pytest.fixture(scope="module")
def projected(scene_and_instance, reference) -> TextureMap:
    scene, instance = scene_and_instance
    return TextureProject({"texels_per_metre": DENSITY, "min_size": 16}).run(
        make_context("project", item="crate"), scene, instance, reference)


def test_the_node_defaults_are_the_settings_defaults() -> None:
    """One default per knob: the node's params and `ProjectionSettings()` agree (128 texels/m, 1024 at most)."""
    assert ProjectParams().settings() == ProjectionSettings()
    assert ProjectionSettings().texels_per_metre == 128.0 and ProjectionSettings().max_size == 1024


def test_projection_sets_the_scale(projected, reference) -> None:
    scale = projected.scale
    assert isinstance(scale, WorldScale)
    assert scale.texels_per_metre == DENSITY and scale.mode == "tile" and scale.repeat == "exact"
    assert scale.swatch_size_m == (0.3, 0.3) and scale.phase == (0.0, 0.0)
    assert scale.projection.min_size == 16 and scale.projection.blend_width == ProjectionSettings().blend_width
    # the diagnostics keep their keys (the report reads them) and agree with the scale
    assert projected.info["texels_per_metre"] == scale.texels_per_metre
    assert projected.info["swatch_size_m"] == list(scale.swatch_size_m)


def test_scale_travels_through_distill_superres_and_brdf(scene_and_instance, reference, projected) -> None:
    scene, instance = scene_and_instance
    ctx = lambda node: make_context(node, item="crate")  # noqa: E731
    views = SampleViews({"resolution": 32, "count": 3, "isolate": True}).run(make_context("views"), scene,
                                                                             {"crate": instance})
    semantic = DistillSemantic({"steps": 2, "init_t_max": 0.4}).run(ctx("semantic"), scene, instance, reference,
                                                                     views, projected)
    pixel = DistillPixel({"steps": 2}).run(ctx("pixel"), scene, instance, reference, views, semantic)
    assert semantic.scale == projected.scale and pixel.scale == projected.scale
    superres = SuperResAnchored({"steps": 2, "factor": 2, "crop": 16}).run(ctx("superres"), pixel, reference,
                                                                           scene=scene, instances=instance)
    assert superres.scale == projected.scale.scaled(2)
    assert superres.scale.texels_per_metre == 2 * DENSITY == superres.info["texels_per_metre"]
    assert superres.scale.projection.min_chart_texels == 4 * projected.scale.projection.min_chart_texels
    pbr = Decompose({"steps": 0, "ao_rays": 0, "baked_shading": False}).run(ctx("brdf"), scene, instance, superres,
                                                                           reference)
    assert isinstance(pbr, PBRMaps) and pbr.scale == superres.scale


def test_a_texture_without_scale_stays_without(scene_and_instance, reference, projected) -> None:
    """A start with no scale (not world-scale) gives an output with none: the test is `scale is None`."""
    plain = TextureMap(image=projected.image, mask=projected.mask, info=dict(projected.info))
    scene, instance = scene_and_instance
    out = SuperResAnchored({"steps": 1, "factor": 2, "crop": 16}).run(make_context("superres", item="crate"), plain,
                                                                      reference, scene=scene, instances=instance)
    assert out.scale is None and "superres_choice" not in out.info


def test_codec_round_trip_and_digest_include_the_scale(projected) -> None:
    tensors, meta = encode(projected)
    back = decode(tensors, meta)
    assert back.scale == projected.scale and isinstance(back.scale.projection, ProjectionSettings)
    assert isinstance(back.scale.swatch_size_m, tuple) and isinstance(back.scale.phase, tuple)
    other = dataclasses.replace(projected, scale=projected.scale.scaled(2))
    assert fingerprint(other) != fingerprint(projected)
    assert fingerprint(dataclasses.replace(projected, scale=None)) != fingerprint(projected)
    assert fingerprint(back) == fingerprint(projected)


def test_ideal_texture_from_the_module_is_the_projection_s(scene_and_instance, reference, projected) -> None:
    scene, instance = scene_and_instance
    side = int(projected.image.shape[-1])
    assert projected.ideal is not None
    assert torch.equal(ideal_texture(scene, instance, reference, projected.scale, side), projected.ideal)
    # laid again at the scale's own phase and blend, on the same side: the projection itself
    assert torch.equal(project(scene, instance, reference, projected.scale, side).image, projected.image)


def test_a_finer_scale_lays_what_superres_laid_before(scene_and_instance, reference, projected) -> None:
    """`scaled(2)` at twice the side is detail transfer's former hand-built settings (density x2, the
    small-chart threshold in base texels), so super-resolution's start is unchanged bit for bit."""
    scene, instance = scene_and_instance
    side = 2 * int(projected.image.shape[-1])
    by_hand = ProjectionSettings(texels_per_metre=DENSITY * 2, min_size=side, max_size=side,
                                 blend_width=0.08, max_distortion=0.12, min_chart_texels=16.0 * 2 * 2)
    expected = project_instance(scene, instance.face_mask, reference, by_hand).image
    assert torch.equal(project(scene, instance, reference, projected.scale.scaled(2), side).image, expected)


def test_swatch_at_keeps_the_aspect_ratio(projected) -> None:
    """The swatch resampled to a density spans its size on both axes (a 2:1 picture stays 2:1)."""
    wide = Reference(images=(torch.rand(3, 20, 40),), size=0.5)
    scale = WorldScale(ProjectionSettings(texels_per_metre=100.0), swatch_size_m=(0.5, 0.25))
    image = swatch_at(wide, scale)
    assert tuple(image.shape) == (3, 25, 50)
    assert tuple(swatch_at(wide, scale, min_side=60, min_repeats=2).shape) == (3, 75, 100)
    fit = dataclasses.replace(scale, mode="fit")
    assert tuple(swatch_at(wide, fit, 40.0, min_side=60).shape) == (3, 10, 20)
    assert phase_of_fraction((0.5, 0.5), scale) == (0.25, 0.125)


def test_one_atlas_size_formula(scene_and_instance, projected) -> None:
    scene, instance = scene_and_instance
    charts = instance_charts(scene, instance)
    wanted = wanted_side(float(charts.area.sum()), float(charts.uv_area.sum()), DENSITY)
    side = 2 ** round(torch.log2(torch.tensor(wanted)).item())
    assert int(projected.image.shape[-1]) == min(1024, max(16, side))
    assert wanted_side(0.0, 1.0, DENSITY) == 0.0
