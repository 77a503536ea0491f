"""Several photos of one swatch under different lights -> albedo, height, roughness (issue 21 item 2).

The photos are pixel-aligned (a tripod capture) and each comes with its light's azimuth (degrees, 0 =
from the image's right, 90 = from its top) and, optionally, its elevation.

1. Each photo's own fall-off (a lamp's cone, a vignette) is a smooth multiplicative field: its
   low-order log trend (`detrend`) is divided out, each photo keeping its mean level.
2. Lambertian photometric stereo per pixel: `I_k = b · l_k` with `b = albedo · n`, solved by least
   squares over the lights and made robust by iteratively reweighted least squares (Tukey weights on
   the relative residual) plus zero weight on shadowed samples, so attached / cast shadows and the
   specular peaks (the outliers of a Lambertian model) leave the solution.
3. The height is the Frankot-Chellappa integral of the normals' slopes (FFT; the least-squares
   integrable surface, periodic), which also makes the normals integrable.
4. Elevation, when not given, is the one that makes the photos' full GGX re-render (the Lambert part is
   blind to it: a common elevation only rescales the relief, the bas-relief ambiguity) fit best, with a
   weak pull to 45 degrees.
5. Roughness: what the Lambertian model leaves (the specular residual of each light, positive where the
   half vector meets the normal) is fitted with the GGX lobe per pixel on a grid of roughness values,
   then smoothed and kept in the class's range.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch

from nodes.brdf.materials import material_prior

from .shading import Light, falloff_basis, height_to_normal, light_direction, luminance, render_swatch

SHADOW_LEVEL = 0.04  # a sample below this fraction of the pixel's brightest light is in shadow
TUKEY_C = 0.25  # relative residual beyond which a light's sample has no weight
IRLS_STEPS = 4
ROUGHNESS_GRID = torch.linspace(0.05, 1.0, 20)
ROUGHNESS_SMOOTH = 2.0  # texels: roughness is spatially smooth (few samples per pixel)
DEFAULT_ELEVATION = 45.0


@dataclass(frozen=True)
class StereoResult:
    albedo: torch.Tensor  # [3, H, W]
    height: torch.Tensor  # [1, H, W] metres, mean 0
    normal: torch.Tensor  # [3, H, W] tangent space, +Y up (integrable: from the height)
    roughness: torch.Tensor  # [1, H, W]
    elevations: tuple[float, ...]
    info: dict


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


def detrend(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`image / exp(trend)` with `trend` the least-squares fit of the log luminance by the fall-off
    polynomial (without constant: the mean level stays); returns (flattened, coefficients)."""
    _, h, w = image.shape
    basis = falloff_basis(h, w).reshape(-1, h * w).T.double()
    basis = basis - basis.mean(0)
    log_l = torch.log(luminance(image).clamp_min(1e-4)).reshape(-1).double()
    coeffs = torch.linalg.lstsq(basis, (log_l - log_l.mean())[:, None]).solution[:, 0]
    trend = (basis @ coeffs).reshape(1, h, w).float()
    return image / torch.exp(trend), coeffs.float()


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


def _ambient_free(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Subtract each pixel's sky term estimate: the darkest photo's value is mostly sky where a light is
    behind the slope; a fraction of the per-pixel minimum is removed so the rest is direct light."""
    stack = torch.stack(list(images))
    floor = 0.5 * stack.min(0).values
    return [img - floor for img in stack]


def _roughness_from_residual(residual: torch.Tensor, b: torch.Tensor, normal: torch.Tensor,
                             dirs: torch.Tensor, shape: tuple[int, int], material: str) -> torch.Tensor:
    """Per pixel the GGX roughness (from `ROUGHNESS_GRID`) whose specular lobe best explains the positive
    residuals `[N, K]` of the Lambertian fit; smoothed, kept in the class's range."""
    prior = material_prior(material)
    n = normal.shape[0]
    view = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)
    errors = []
    for r in ROUGHNESS_GRID:
        lobes = []
        for k in range(dirs.shape[0]):
            spec = render_swatch_flat_spec(normal, view, dirs[k], float(r))
            lobes.append(spec)
        lobe = torch.stack(lobes, 1)  # [N, K]
        scale = (lobe * residual).sum(1, keepdim=True) / (lobe * lobe).sum(1, keepdim=True).clamp_min(1e-9)
        scale = scale.clamp(0.0, 1.0)
        errors.append(((residual - scale * lobe) ** 2).sum(1))
    best = ROUGHNESS_GRID[torch.stack(errors, 1).argmin(1)]
    rough = best.reshape(1, *shape)
    rough = kornia.filters.median_blur(rough[None], 5)[0]
    sigma = ROUGHNESS_SMOOTH
    k = 2 * int(math.ceil(2 * sigma)) + 1
    rough = kornia.filters.gaussian_blur2d(rough[None], (k, k), (sigma, sigma), border_type="reflect")[0]
    return rough.clamp(*prior.roughness)


def render_swatch_flat_spec(normal: torch.Tensor, view: torch.Tensor, direction: torch.Tensor,
                            roughness: float) -> torch.Tensor:
    """GGX specular (dielectric, F0 0.04) times n·l per pixel `[N]` for a unit light."""
    from nodes.brdf.ggx import shade

    n = normal.shape[0]
    white = torch.ones(n, 3)
    spec = shade(white, torch.full((n, 1), roughness), torch.zeros(n, 1), normal, view, direction[None],
                 torch.full((1, 3), math.pi), diffuse=False)
    return spec[:, 1]
