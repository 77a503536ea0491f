"""swatch.material's tiling (issue 25 item 1) and the tile-seam measure (item 2) on photo-like swatches."""
from __future__ import annotations

import torch

from helpers.photo_swatches import TUNING, floor_scene, reference_of
from nodes.measures.colour import invented_colour_share
from nodes.measures.seams import tile_seams
from nodes.swatch.nodes import material_from_reference
from nodes.swatch.tileable import TileSettings, make_tileable, wrap_novelty
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.quality.shapes import checker, stripes

WIDTH, CROP = 1.5, 64  # 4 x 4 repeats of a 0.375 m photo on a 256² atlas, one texel per photo pixel


def laid():
    scene, instances = floor_scene(WIDTH)
    settings = ProjectionSettings(texels_per_metre=256 / WIDTH, max_size=256)
    return lambda source: project_instance(scene, instances["floor"].face_mask, source, settings)


def test_the_crop_tiled_by_hand_shows_seams_and_the_material_hides_them() -> None:
    """The measure sees the seams of the crop repeated as is (step ratio well above 1.5 in some direction);
    the tileable material passes (a) >= 0.85, (b) in [0.67, 1.5], (c) >= 0.7, with no invented colour."""
    project = laid()
    for swatch in TUNING:
        reference = reference_of(swatch, size=WIDTH / 4, crop=CROP)
        by_hand = project(reference)
        raw = tile_seams(by_hand.image, by_hand.mask, reference.images[0], (CROP, CROP))
        assert raw.step > 1.5, (swatch.name, raw)
        material = material_from_reference(reference, TileSettings(), fit="none")  # the tiling alone (no de-lighting)
        result = project(material)
        period = tuple(material.albedo.shape[-2:])
        seams = tile_seams(result.image, result.mask, material.albedo, period)
        assert not seams.failures(), (swatch.name, seams)
        assert invented_colour_share(result.image, result.mask, reference.images[0]) <= 1e-3, swatch.name
        assert TileSettings().min_period_fraction * CROP <= min(period) and material.size * CROP == reference.size * material.albedo.shape[-1]


def test_a_swatch_that_already_tiles_comes_back_unchanged() -> None:
    for image in (stripes(64, periods=4), checker(64, squares=4)):
        assert max(wrap_novelty(image)) == 0.0
        out, info = make_tileable(image, TileSettings())
        assert out is image and info["method"] == "identity"


def test_every_map_takes_the_same_transform() -> None:
    """A height map that is the albedo's luminance stays its luminance after tiling (same cuts, same strip,
    same refused blends)."""
    albedo = TUNING[0].image(CROP)
    luma = (albedo * torch.tensor([0.2126, 0.7152, 0.0722])[:, None, None]).sum(0, keepdim=True)
    out, info = make_tileable(torch.cat([albedo, luma - 0.5]), TileSettings())
    assert info["method"] != "identity"
    again = (out[:3] * torch.tensor([0.2126, 0.7152, 0.0722])[:, None, None]).sum(0, keepdim=True)
    inside = ((out[:3] > 0) & (out[:3] < 1)).all(0, keepdim=True)  # colours clamp to [0, 1], height does not
    assert torch.allclose(out[3:][inside], (again - 0.5)[inside], atol=1e-5)
