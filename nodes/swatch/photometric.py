"""Several photos of one swatch under different lights -> albedo, height, roughness (issue 21 item 2).

The photos are pixel-aligned (a tripod capture) and each comes with its light's azimuth (degrees, 0 =
from the image's right, 90 = from its top) and, optionally, its elevation.

1. Each photo's own fall-off (a lamp's cone, a vignette) is a smooth multiplicative field: the
   deviation of its low-order log trend from the photos' common trend is divided out
   (`_common_detrend`; the common part may be the albedo's own and stays), each keeping its mean level.
2. Lambertian photometric stereo per pixel: `I_k = b · l_k` with `b = albedo · n`, solved by least
   squares over the lights and made robust by iteratively reweighted least squares (Tukey weights on
   the relative residual) plus zero weight on shadowed samples, so attached / cast shadows and the
   specular peaks (the outliers of a Lambertian model) leave the solution. The albedo is the trimmed
   photos' sum over their predicted shading's sum (`n·l` plus a sky term fitted once): the stereo's
   counterpart of averaging the photos.
3. The height is the Frankot-Chellappa integral of the normals' slopes (FFT; the least-squares
   integrable surface, periodic), which also makes the normals integrable.
4. Elevation, when not given, is the one that makes the photos' full GGX re-render (the Lambert part is
   blind to it: a common elevation only rescales the relief, the bas-relief ambiguity) fit best, with a
   weak pull to 45 degrees.
5. Roughness (experimental, off unless asked: `swatch.material`'s `roughness_from_photos`): the
   re-rendering fit (`pbr_fit.refine`, Lambert + GGX) over a coarse roughness grid with albedo and
   normals held at the stereo's, each photo's gain and fall-off free. Only a light near the
   camera's axis makes the specular lobe's width visible on flat texels; with lights at one raking
   elevation the lobe trades off with albedo. Measured (bench/pbr_photo.py) not yet better than one value.
6. Elevation measured (bench): estimates are biased low (20° for a true 40°); give `[azimuth, elevation]`
   when known.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from nodes.brdf.materials import material_prior

from .pbr_fit import FitResult, FitWeights, log_trend, refine
from .shading import FALLOFF_TERMS, Light, falloff_basis, height_to_normal, light_direction, luminance, render_swatch

SHADOW_LEVEL = 0.04  # a sample below this fraction of the pixel's brightest light is in shadow
TUKEY_C = 0.25  # relative residual beyond which a light's sample has no weight
IRLS_STEPS = 4
DEFAULT_ELEVATION = 45.0
ELEVATION_PULL = 1e-4
ROUGHNESS_STEPS = 60
SKY_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)  # the sky's irradiance as a fraction of a light's


def frankot_chellappa(gx: torch.Tensor, gy: torch.Tensor, pixel_size: float) -> torch.Tensor:
    """Height `[1, H, W]` (metres, mean 0) whose slopes best match `(dh/dx, dh/dy)` (x right, y up) in
    least squares over periodic surfaces (Frankot & Chellappa 1988)."""
    _, h, w = gx.shape
    g_col, g_row = gx[0].double() * pixel_size, -gy[0].double() * pixel_size  # per texel, rows down
    kr = torch.fft.fftfreq(h, dtype=torch.float64)[:, None] * 2 * math.pi
    kc = torch.fft.fftfreq(w, dtype=torch.float64)[None, :] * 2 * math.pi
    # Central differences: the derivative's symbol is i sin(k).
    sr, sc = torch.sin(kr), torch.sin(kc)
    denom = sr * sr + sc * sc
    denom[0, 0] = 1.0
    num = -1j * (sc * torch.fft.fft2(g_col) + sr * torch.fft.fft2(g_row))
    hat = num / denom
    hat[0, 0] = 0.0
    hat[denom < 1e-9] = 0.0
    return torch.fft.ifft2(hat).real.float()[None]


def _common_detrend(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each photo without its own fall-off: its log trend's deviation from the photos' common trend (the
    common part may be the albedo's own gradient, which every photo shares; the average keeps it too)."""
    logs = [torch.log(luminance(img).clamp_min(1e-4)) for img in images]
    coeffs = torch.stack([log_trend(lg) for lg in logs])
    basis = falloff_basis(*images[0].shape[-2:])
    out = []
    for img, c in zip(images, coeffs - coeffs.mean(0)):
        out.append(img / torch.exp(torch.einsum("k,khw->hw", c, basis)))
    return out


def _tukey(r: torch.Tensor) -> torch.Tensor:
    return torch.where(r.abs() < TUKEY_C, (1 - (r / TUKEY_C) ** 2) ** 2, torch.zeros_like(r))


def lambert_stereo(lum: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust per-pixel `b = albedo · n` `[N, 3]` from luminances `[N, K]` under directions `[K, 3]`;
    returns (b, the final weights `[N, K]`)."""
    brightest = lum.max(1, keepdim=True).values.clamp_min(1e-6)
    lit = (lum > SHADOW_LEVEL * brightest).float()
    weights = lit.clone()
    b = torch.zeros(lum.shape[0], 3)
    for _ in range(IRLS_STEPS):
        wl = weights[:, :, None] * dirs[None]  # [N, K, 3]
        a = torch.einsum("nki,kj->nij", wl, dirs) + 1e-6 * torch.eye(3)
        rhs = torch.einsum("nki,nk->ni", wl, lum)
        b = torch.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        residual = (lum - b @ dirs.T) / brightest
        weights = lit * _tukey(residual)
        enough = weights.gt(0).sum(1, keepdim=True) >= 3
        weights = torch.where(enough, weights, lit)
    return b, weights


def _normals_from_b(b: torch.Tensor, shape: tuple[int, int], pixel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrable height `[1, H, W]` and its normals from per-pixel `b = albedo · n` `[N, 3]`."""
    nz = b[:, 2].clamp_min(0.05 * b.norm(dim=1).clamp_min(1e-6))
    gx = (-b[:, 0] / nz).clamp(-4, 4).reshape(1, *shape)
    gy = (-b[:, 1] / nz).clamp(-4, 4).reshape(1, *shape)
    height = frankot_chellappa(gx, gy, pixel_size)
    return height, height_to_normal(height, pixel_size, periodic=True)


def _directions(azimuths: Sequence[float], elevations: Sequence[float]) -> torch.Tensor:
    return light_direction(torch.tensor(list(azimuths), dtype=torch.float32),
                           torch.tensor(list(elevations), dtype=torch.float32))


def _stereo_at(lums: torch.Tensor, azimuths: Sequence[float],
               elevations: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return lambert_stereo(lums, _directions(azimuths, elevations))


def _measured_normals(b: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return (b / b.norm(dim=1, keepdim=True).clamp_min(1e-6)).T.reshape(3, *shape)


def estimate_elevation(flats: Sequence[torch.Tensor], azimuths: Sequence[float], given: Sequence[float | None],
                       material: str) -> list[float]:
    """Fill the elevations not given with one common value: the grid value whose full GGX re-render (with
    the sky fitted as in `_albedo`) fits the photos best, plus a weak pull to `DEFAULT_ELEVATION` (module
    docstring, step 4)."""
    if all(e is not None for e in given):
        return [float(e) for e in given]  # type: ignore[arg-type]
    _, h, w = flats[0].shape
    lums = torch.cat([luminance(f).reshape(-1, 1) for f in flats], 1)
    rough = material_prior(material).roughness_typical
    best, best_cost = DEFAULT_ELEVATION, float("inf")
    for candidate in range(20, 80, 5):
        elevations = [float(e) if e is not None else float(candidate) for e in given]
        b, weights = _stereo_at(lums, azimuths, elevations)
        normal = _measured_normals(b, (h, w))
        albedo, sky = _albedo(flats, normal, weights, azimuths, elevations)
        cost = 0.0
        for k, lum in enumerate(lums.T):
            light = Light(float(azimuths[k]), elevations[k], ambient=sky)
            image = render_swatch(albedo, normal, rough, 0.0, light)
            error = torch.log(luminance(image).reshape(-1) + 0.01) - torch.log(lum + 0.01)
            cost += float((weights[:, k] * error**2).mean())
        cost = cost / len(flats) + ELEVATION_PULL * ((candidate - DEFAULT_ELEVATION) / 10.0) ** 2
        if cost < best_cost:
            best, best_cost = float(candidate), cost
    return [float(e) if e is not None else best for e in given]


def _albedo(flats: Sequence[torch.Tensor], normal: torch.Tensor, weights: torch.Tensor,
            azimuths: Sequence[float], elevations: Sequence[float]) -> tuple[torch.Tensor, float]:
    """(`[3, H, W]`, sky): per pixel the trimmed photos' sum over their predicted shading's sum (`n·l` plus a
    sky term fitted once), the stereo's counterpart of averaging the photos."""
    _, h, w = flats[0].shape
    dirs = _directions(azimuths, elevations)
    shade = (normal.reshape(3, -1).T @ dirs.T).clamp_min(0.0)  # [N, K]
    rgb = torch.stack([f.reshape(3, -1) for f in flats], -1)  # [3, N, K]
    lum = torch.stack([luminance(f).reshape(-1) for f in flats], -1)  # [N, K]
    best, best_cost = 0.0, float("inf")
    for sky in SKY_GRID:
        rho = (weights * lum).sum(1) / (weights * (shade + sky)).sum(1).clamp_min(1e-6)
        cost = float((weights * (lum - rho[:, None] * (shade + sky)) ** 2).sum() / (lum ** 2).sum())
        if cost < best_cost:
            best, best_cost = sky, cost
    denom = (weights * (shade + best)).sum(1).clamp_min(1e-6)
    return ((rgb * weights).sum(-1) / denom).reshape(3, h, w), best


def photometric_stereo(images: Sequence[torch.Tensor], azimuths: Sequence[float], elevations: Sequence[float | None],
                       size: float, material: str = "generic", refine_steps: int | None = None) -> FitResult:
    """Albedo, height and roughness from pixel-aligned photos `[3, H, W]` under known light azimuths."""
    _, h, w = images[0].shape
    pixel = size / w
    flats = _common_detrend(images)
    elev = estimate_elevation(flats, azimuths, elevations, material)
    lums = torch.cat([luminance(f).reshape(-1, 1) for f in flats], 1)
    b, weights = _stereo_at(lums, azimuths, elev)
    height, normal = _normals_from_b(b, (h, w), pixel)
    # The measured (not integrated) normals shade the albedo: integration bends steep relief a little.
    albedo, sky = _albedo(flats, _measured_normals(b, (h, w)), weights, azimuths, elev)
    fitted = [Light(float(az), e, (0.0,) * FALLOFF_TERMS, 1.0, sky) for az, e in zip(azimuths, elev)]
    weights_fit = replace(FitWeights(), steps=ROUGHNESS_STEPS if refine_steps is None else refine_steps, lr=0.1)
    # Albedo and normals are what the Lambertian stereo measures well; the re-rendering fit adds roughness.
    # b holds albedo times the light's strength: bring it to the photos' level (under the clamp at 1).
    mean_photo = torch.stack([luminance(img).mean() for img in images]).mean()
    scale = float(mean_photo / luminance(albedo).mean().clamp_min(1e-6))
    albedo = albedo * scale
    fitted = [replace(lt, intensity=1.0 / scale) for lt in fitted]
    result = refine(flats, fitted, albedo.clamp(1e-3, 1.0), height, pixel, material, weights_fit, free=("roughness",),
                    free_lights=("falloff", "log_gain"))
    result.albedo = (result.albedo * mean_photo / luminance(result.albedo).mean().clamp_min(1e-6)).clamp(0.0, 1.0)
    result.info.update(elevations=elev, trimmed=float((weights == 0).float().mean()))
    return result
