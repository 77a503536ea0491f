"""Issue 21's figures at small sizes, on photos rendered from known maps (tests/helpers/pbr_swatches.py),
through `swatch.material`'s fit (`fit_reference`), beside the simple alternatives (bench/pbr_photo.py has
the full table)."""
from __future__ import annotations

import pytest
import torch

from helpers.pbr_swatches import RAKING, four_lights, known_swatch, photograph, shading
from nodes.brdf import photo_metrics as pm
from nodes.scene.references import flatten_lighting
from nodes.swatch.fit import fit_reference
from nodes.swatch.photometric import frankot_chellappa
from nodes.swatch.shading import falloff_basis, height_gradient, height_to_normal, luminance
from nodes.types import Reference

SIZE = 64


@pytest.mark.slow  # ~10-30 s each: an iterative fit per photo
@pytest.mark.parametrize("name", ["bricks", "roof_tiles"])  # one tuned on, one held out
def test_one_photo_removes_the_light_and_finds_the_relief(name: str) -> None:
    sw = known_swatch(name, SIZE)
    photo = photograph(sw, RAKING)
    albedo, height, roughness, metallic, info = fit_reference(
        Reference(images=(photo,), material=sw.material, size=sw.size, mode="fit"))
    assert height is not None and roughness is None and metallic is None  # roughness/metallic: the class's
    made = shading(sw, RAKING)
    assert pm.shading_leak(photo, sw.albedo, made) > 0.75  # the photo carries its shading ...
    assert pm.shading_leak(albedo, sw.albedo, made) <= 0.4  # ... the fitted albedo does not
    assert pm.rmse_after_gain(albedo, sw.albedo) <= pm.rmse_after_gain(photo, sw.albedo)
    ours = pm.normal_xy_correlation(height_to_normal(height, sw.pixel_size), sw.normal())
    heuristic = max(pm.normal_xy_correlation(pm.highpass_normals(photo, sigmas=s), sw.normal())
                    for s in ((1.0, 2.0), (2.0, 5.0, 12.0), (4.0,)))
    assert ours >= max(heuristic + 0.1, 0.3), (ours, heuristic)
    # flatten_lighting removes the same large-scale trend the fit estimates as the light's fall-off.
    removed = torch.log(luminance(photo)) - torch.log(luminance(flatten_lighting(photo)).clamp_min(1e-4))
    estimated = torch.einsum("k,khw->hw", torch.tensor(info["falloff"]), falloff_basis(SIZE, SIZE))
    assert pm.pearson(removed, estimated) > 0.8


@pytest.mark.slow
def test_four_lights_beat_the_average_of_the_photos() -> None:
    sw = known_swatch("stones", SIZE)
    lights = four_lights()
    photos = tuple(photograph(sw, lt) for lt in lights)
    albedo, height, roughness, _, info = fit_reference(Reference(
        images=photos, material=sw.material, size=sw.size, mode="fit",
        lights=tuple((lt.azimuth, lt.elevation) for lt in lights)), roughness_from_photos=True)
    assert info["fit"] == "photometric_stereo" and roughness is not None
    assert pm.rmse_after_gain(albedo, sw.albedo) <= pm.rmse_after_gain(torch.stack(photos).mean(0), sw.albedo)
    assert pm.normal_xy_correlation(height_to_normal(height, sw.pixel_size), sw.normal()) >= 0.9


def test_frankot_chellappa_recovers_a_periodic_height() -> None:
    t = torch.arange(32) / 32 * 2 * torch.pi
    height = (0.002 * torch.sin(t)[None, :] * torch.cos(2 * t)[:, None])[None]
    gx, gy = height_gradient(height, 0.01, periodic=True)
    back = frankot_chellappa(gx, gy, 0.01)
    assert torch.allclose(back, height - height.mean(), atol=2e-5)
