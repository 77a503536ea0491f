"""swatch.material and the maps texture.project lays from it (SWATCH_INTERFACE.md §2-3)."""
from __future__ import annotations

import dataclasses

import torch

import nodes.catalog  # noqa: F401
from graphflow.testing import make_context
from nodes.distill.superres import upsampled_map
from nodes.scene.nodes import SegmentParts
from nodes.swatch.nodes import SwatchMaterialNode
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.types import SwatchMaterial


def test_a_material_lays_height_and_roughness_exactly_like_its_albedo() -> None:
    """Height and roughness go through the same charts, triplanar projections and seam cuts as the colour (the
    sphere has a triplanar chart and seams)."""
    scene = shapes_scene()
    instances = SegmentParts({}).run(make_context("segment"), scene)
    reference = shapes_references()["ball"]
    albedo = reference.images[0].float()
    generator = torch.Generator().manual_seed(0)
    height = (torch.rand(1, *albedo.shape[-2:], generator=generator) - 0.5) * 0.004  # metres, signed
    roughness = albedo.mean(0, keepdim=True)
    material = SwatchMaterial(albedo=albedo, height=height, roughness=roughness, metallic=None,
                              size=reference.size, mode=reference.mode, material=reference.material)
    settings = ProjectionSettings(texels_per_metre=64)
    face_mask = instances["ball"].face_mask
    laid = project_instance(scene, face_mask, material, settings, with_ideal=True)
    plain = project_instance(scene, face_mask, reference, settings, with_ideal=True)
    assert torch.equal(laid.image, plain.image) and torch.equal(laid.ideal, plain.ideal)
    # Every map takes the albedo's choices (which chart's pattern, which triplanar axis, where a seam cut runs):
    # lookups are linear in the map, so a map scaled and shifted lays as the same map scaled and shifted.
    other = dataclasses.replace(material, height=height * 3 + 0.001, roughness=1 - roughness)
    relaid = project_instance(scene, face_mask, other, settings)
    assert torch.equal(relaid.image, laid.image)
    assert torch.allclose(relaid.height, laid.height * 3 + 0.001, atol=1e-6)
    assert torch.allclose(relaid.roughness, (1 - laid.roughness).clamp(0, 1), atol=1e-6)
    for name in ("height", "roughness"):
        assert getattr(laid, name).shape == (1, *laid.image.shape[-2:])
    # ... and the map follows the pattern: where the albedo shows a dot, the roughness (the albedo's mean) does.
    assert torch.allclose(laid.roughness[0], laid.image.mean(0), atol=1e-5)
    assert float(laid.height.min()) < 0  # signed metres survive


def test_swatch_material_of_a_tileable_swatch_is_the_image_itself() -> None:
    reference = shapes_references()["ball"]
    material = SwatchMaterialNode({}).run(make_context("material"), reference)
    assert torch.equal(material.albedo, reference.images[0].float().clamp(0, 1))
    assert material.height is None and material.roughness is None and material.size == reference.size
    assert material.as_reference().images[0] is material.albedo


def test_superres_upsamples_a_map_and_refills_its_gutter() -> None:
    value = torch.arange(16.0).reshape(1, 4, 4)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4, :4] = True
    up = upsampled_map(value, 2, mask)
    assert up.shape == (1, 8, 8) and torch.isfinite(up).all()
    assert upsampled_map(None, 2, mask) is None


def test_seamless_false_keeps_the_photo_as_bound() -> None:
    from helpers.photo_swatches import TUNING, reference_of

    reference = reference_of(TUNING[0], size=0.375, crop=64)
    # fit: none: the tiling alone (the default also removes the photo's light, issue 21)
    kept = SwatchMaterialNode({"seamless": False, "fit": "none"}).run(make_context("material"), reference)
    healed = SwatchMaterialNode({"fit": "none"}).run(make_context("material"), reference)
    assert torch.equal(kept.albedo, reference.images[0]) and kept.size == reference.size
    assert healed.info["tileable"]["method"] != "identity"
