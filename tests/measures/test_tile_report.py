"""Issue 25 item 2 on any texturing output: `tile_report` resamples an atlas into the swatch's frame over the
largest chart and judges its tile seams, whatever the chart's orientation in UV space."""
from __future__ import annotations

import dataclasses
import math

import torch

from helpers.photo_swatches import TUNING, floor_scene, reference_of
from nodes.measures.tile_report import tile_report
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.texture.world import instance_charts
from nodes.types import Reference

WIDTH, CROP = 1.5, 64  # 4 x 4 repeats of a 0.375 m swatch on a 256² atlas


def periodic_noise(size: int = CROP, seed: int = 4) -> torch.Tensor:
    """A tileable swatch textured everywhere: sinusoids of whole frequencies with random phases (linear RGB)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(size, dtype=torch.float64) * 2 * math.pi / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    image = torch.zeros(3, size, size, dtype=torch.float64)
    for fy in range(-6, 7):
        for fx in range(0, 7):
            amplitude = torch.rand(3, generator=g, dtype=torch.float64) / (1 + fx * fx + fy * fy)
            phase = float(torch.rand(1, generator=g)) * 2 * math.pi
            image += amplitude[:, None, None] * torch.cos(fx * x + fy * y + phase)
    image = (image - image.mean()) / image.std() * 0.12 + 0.45
    return image.clamp(0, 1).float()


def verdict(report: dict) -> tuple[bool, bool]:
    return tuple(bool(report[d]["pass"]) for d in ("x", "y"))


def laid(reference: Reference, rotated: bool = False) -> dict:
    """The report of `reference` laid on the floor quad (its UVs turned 90° when `rotated`)."""
    scene, instances = floor_scene(WIDTH)
    if rotated:
        scene = dataclasses.replace(scene, uvs=torch.stack([1 - scene.uvs[:, 1], scene.uvs[:, 0]], 1).contiguous())
    floor = instances["floor"]
    texture = project_instance(scene, floor.face_mask, reference, ProjectionSettings(texels_per_metre=256 / WIDTH,
                                                                                     max_size=256))
    return tile_report(instance_charts(scene, floor), texture.image, texture.mask, texture.scale, reference.images[0])


def test_a_tileable_swatch_passes_in_both_directions() -> None:
    report = laid(Reference(images=(periodic_noise(),), size=WIDTH / 4, mode="tile"))
    assert report["measurable"] and report["period_texels"] == [CROP, CROP], report
    for direction in ("x", "y"):
        row = report[direction]
        assert row["a"] >= 0.85 and 0.67 <= row["b"] <= 1.5 and row["c"] >= 0.7 and row["pass"], report
        assert row["boundaries"] >= 3, report
        assert report["swatch"][direction]["pass"], report  # the swatch itself repeated: seamless too


def test_a_photo_crop_laid_as_is_shows_its_seams() -> None:
    for swatch in TUNING:
        report = laid(reference_of(swatch, size=WIDTH / 4, crop=CROP))
        rows = [report[d] for d in ("x", "y") if isinstance(report[d], dict)]
        assert rows and any(r["a"] < 0.85 or not 0.67 <= r["b"] <= 1.5 for r in rows), (swatch.name, report)
        assert not all(r["pass"] for r in rows), (swatch.name, report)
        # laid as is, the texture shows exactly the crop's own edges: the swatch repeated reads the same
        assert [report["swatch"][d]["pass"] for d in ("x", "y")] == [report[d]["pass"] for d in ("x", "y")]


def test_a_rotated_chart_gives_the_same_verdict() -> None:
    for reference in (Reference(images=(periodic_noise(),), size=WIDTH / 4, mode="tile"),
                      reference_of(TUNING[0], size=WIDTH / 4, crop=CROP)):
        straight, turned = laid(reference), laid(reference, rotated=True)
        assert verdict(straight) == verdict(turned), (straight, turned)
        for d in ("x", "y"):
            assert abs(straight[d]["b"] - turned[d]["b"]) < 0.25 * straight[d]["b"], (straight, turned)


def test_what_cannot_be_measured_says_so() -> None:
    small = laid(Reference(images=(periodic_noise(),), size=WIDTH, mode="tile"))  # one repeat across the floor
    assert small["x"].startswith("not measurable") and small["y"].startswith("not measurable")
    scene, instances = floor_scene(WIDTH)
    charts = instance_charts(scene, instances["floor"])
    assert tile_report(charts, torch.zeros(3, 8, 8), torch.ones(8, 8, dtype=torch.bool), None) == {
        "measurable": False, "why": "not a swatch laid in tile mode at its real size"}


def test_the_known_phase_is_where_registration_puts_the_swatch() -> None:
    """The frame's tile origin (from the chart's map and the projection's phase, no registration) agrees with
    `register_tiles` on the resampled image, for a shifted phase and a rotated chart."""
    from nodes.measures.seams import register_tiles
    from nodes.measures.tile_report import swatch_frame

    swatch = periodic_noise()
    for rotated in (False, True):
        scene, instances = floor_scene(WIDTH)
        if rotated:
            scene = dataclasses.replace(scene, uvs=torch.stack([1 - scene.uvs[:, 1], scene.uvs[:, 0]], 1).contiguous())
        settings = ProjectionSettings(texels_per_metre=256 / WIDTH, max_size=256, phase=(0.1, 0.23))
        texture = project_instance(scene, instances["floor"].face_mask, Reference(images=(swatch,), size=WIDTH / 4),
                                   settings)
        charts = instance_charts(scene, instances["floor"])
        image, mask, origin, period = swatch_frame(charts, 0, texture.image, texture.mask, texture.scale)
        found = register_tiles(image, mask, swatch, period)
        assert all(min((f - o) % p, (o - f) % p) <= 1 for f, o, p in zip(found, origin, period)), (found, origin)
