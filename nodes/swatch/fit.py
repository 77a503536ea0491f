"""`fit_material`'s work: a reference's photo(s) -> albedo (light removed), height, roughness, metallic.

One photo: `pbr_fit.fit_one_photo` (light estimated, re-rendering fit); several photos with `lights:`:
`photometric.photometric_stereo`. Both run at a working size (`work_size` on the short side: the fits
are iterative and their maps are smooth at that scale), then come back to the photo's resolution: the
height and roughness upsampled, the albedo as the full-resolution photo divided by the upsampled shading
the fit found (photo / albedo at the working size), so the albedo keeps the photo's fine colour detail.

One photo of a class whose prior says its fine luminance is colour, not relief (`MaterialPrior.relief`
0: wood, metal, plastic, ceramic, paper, glass, paint), is taken as albedo with no maps: a wrong relief
is worse than none. Metallic stays the class's (None) in both paths.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nodes.brdf.materials import material_prior
from nodes.scene.images import fit_short_side
from nodes.types import Reference

from .pbr_fit import FitResult, fit_one_photo
from .photometric import photometric_stereo
from .shading import luminance

WORK_SIZE = 96
FLAT_STD = 1e-3  # luminance spread below which an image is one colour (a class placeholder): nothing to fit

Maps = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float | None, dict[str, Any]]


def _up(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == shape:
        return x
    return F.interpolate(x[None], size=shape, mode="bilinear", align_corners=False)[0]


def _to_full(result: FitResult, photo_small: torch.Tensor, photo_full: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The fit's maps at the full photo's size (module docstring)."""
    shape = (int(photo_full.shape[-2]), int(photo_full.shape[-1]))
    shading = luminance(photo_small).clamp_min(1e-4) / luminance(result.albedo).clamp_min(1e-4)
    albedo = (photo_full / _up(shading, shape).clamp_min(1e-3)).clamp(0.0, 1.0)
    return albedo, _up(result.height, shape), _up(result.roughness, shape).clamp(0.0, 1.0)


def fit_reference(reference: Reference, work_size: int = WORK_SIZE, photo: bool = True,
                  roughness_from_photos: bool = False) -> Maps:
    """(albedo, height, roughness, metallic, info) of a reference (module docstring). `photo=False`: the
    first image is albedo already (a procedural or painted swatch) and no maps are fitted.
    `roughness_from_photos` (experimental): return the several-photo roughness fit instead of None (the
    class prior); on the test materials (bench/pbr_photo.py) it is not yet better than one value."""
    images = [img.float().clamp(0, 1) for img in reference.images]
    prior = material_prior(reference.material)
    if reference.lights:
        small = [fit_short_side(img, work_size) for img in images]
        result = photometric_stereo(small, [az for az, _ in reference.lights], [el for _, el in reference.lights],
                                    float(reference.size), reference.material,
                                    refine_steps=None if roughness_from_photos else 0)
        mean_full, mean_small = torch.stack(images).mean(0), torch.stack(small).mean(0)
        albedo, height, roughness = _to_full(result, mean_small, mean_full)
        kept = roughness if roughness_from_photos else None
        return albedo, height, kept, None, {"fit": "photometric_stereo", **_info(result)}
    small = fit_short_side(images[0], work_size)
    reason = ("not a photo" if not photo else f"class '{reference.material}' has no relief" if prior.relief <= 0.0
              else "a uniform image" if float(luminance(small).std()) < FLAT_STD else None)
    if reason is not None:
        return images[0], None, None, None, {"fit": f"none ({reason})"}
    result = fit_one_photo(small, float(reference.size), reference.material)
    albedo, height, _ = _to_full(result, small, images[0])
    # One light barely constrains roughness (it trades off with albedo): the class prior decides downstream.
    return albedo, height, None, None, {"fit": "one_photo", **_info(result)}


def _info(result: FitResult) -> dict[str, Any]:
    return {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, list, dict))}
