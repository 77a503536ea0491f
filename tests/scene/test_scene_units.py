"""Issue 23 item 1: a scene in any unit is textured at its real size.

The demo room is written as glb in metres, centimetres and millimetres (positions and node translations
scaled, UVs and normals the same). Loaded with `units` given or `auto`, segmented and projected with the demo's
references, every instance gets the same atlas as from metres. "The same" here: the same atlas side and the
same valid-texel mask, exactly; on the mask, 99% of the texels within 1e-4 and every one within 5e-3 (linear
RGB in [0, 1]; one 8-bit sRGB level is 4e-3 at mid grey). Not bit-identical because the millimetre file holds
float32(x * 1000): the positions read back differ from the metre file's by float32 rounding (about 1e-7 of the
room's size), so a texel's swatch lookup moves by that much (measured: at most 3e-6 on 6 of the 7 instances)
and, on the table, a few texels near seams pick another of two equally near seam edges (at most 3e-3 on
under 1% of its texels). Texels outside the mask are gutter fill (copies for mip lookups), not compared.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from unit_scenes import demo_room_glb, tiny_spheres_glb

import nodes.catalog  # noqa: F401 - registers the nodes
from nodes.scene.demo_room import build_room_references
from nodes.scene.loader import load_scene
from nodes.scene.segment import segment_scene
from nodes.scene.units import choose_units
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.types import Scene

SETTINGS = ProjectionSettings(texels_per_metre=32, min_size=16, max_size=128)


def projected(scene: Scene) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    instances = segment_scene(scene, by="node")
    references = build_room_references(0, {}, 64)
    return {name: (texture.image, texture.mask) for name in instances
            for texture in [project_instance(scene, instances[name].face_mask, references[name], SETTINGS)]}


@pytest.fixture(scope="module")
def metre_textures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    torch.set_num_threads(1)
    path = demo_room_glb(tmp_path_factory.mktemp("m") / "room_m.glb", "m")
    return projected(load_scene(path, units="auto"))


@pytest.mark.parametrize(("unit", "given"), [("cm", "auto"), ("mm", "auto"), ("mm", "mm"), ("cm", "cm")])
def test_room_in_other_units_gives_the_metre_textures(unit: str, given: str, tmp_path: Path,
                                                      metre_textures: dict, caplog: pytest.LogCaptureFixture) -> None:
    path = demo_room_glb(tmp_path / f"room_{unit}.glb", unit)
    with caplog.at_level(logging.WARNING):
        scene = load_scene(path, units=given)  # type: ignore[arg-type]
    assert scene.units == unit
    guessed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if given == "auto":  # one line: what it read, what it chose, how to override
        assert len(guessed) == 1 and f"read as {'centimetres' if unit == 'cm' else 'millimetres'}" in guessed[0]
        assert "scene.params.units" in guessed[0]
    else:
        assert guessed == []
    textures = projected(scene)
    assert textures.keys() == metre_textures.keys()
    for name, (image, mask) in textures.items():
        ref_image, ref_mask = metre_textures[name]
        assert image.shape == ref_image.shape, name
        assert torch.equal(mask, ref_mask), name
        error = (image - ref_image).abs().amax(0)[mask]
        assert float(error.max()) < 5e-3 and float((error > 1e-4).float().mean()) < 0.01, name


def test_auto_keeps_plausible_metres_and_judges_parts() -> None:
    room = [np.array([[0, 0, 0], [4, 2.5, 3]], dtype=np.float32), np.array([[0, 0, 0], [1, 0.8, 0.6]], np.float32)]
    assert choose_units("auto", room).unit == "m" and not choose_units("auto", room).guessed
    tiny = [p * 0.001 for p in room]  # too small for a room, but no unit makes the numbers larger: metres
    assert choose_units("auto", tiny).unit == "m"
    chair_cm = [np.array([[0, 0, 0], [5, 45, 5]], dtype=np.float32)] * 4 + [np.array([[0, 0, 0], [45, 5, 45]],
                                                                                     dtype=np.float32)]
    assert choose_units("auto", chair_cm).unit == "cm"  # 45 m chair legs: not indoors
    assert choose_units("in", chair_cm).metres_per_unit == pytest.approx(0.0254)


def test_a_scene_a_third_of_a_millimetre_wide_loads(tmp_path: Path) -> None:
    """MetalRoughSpheresNoTextures-like: 0.35 mm spheres with UVs that need unwrapping; xatlas used to
    return NaN UVs for them ("coordinates too large ... overflow float32")."""
    path = tiny_spheres_glb(tmp_path / "spheres.glb")
    scene = load_scene(path, units="auto")
    assert scene.units == "m" and torch.isfinite(scene.uvs).all()
    assert float(scene.positions.abs().max()) < 0.003
