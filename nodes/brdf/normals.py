"""Tangent-space detail normals of a baked or painted appearance (step 3 of `nodes.brdf.decompose`).

Shape from shading where the fitted light explains the luminance (`shading_tilt`), a height field of
the fine log luminance where it does not (`height_normals`); `detail_normals` blends the two by the
light fit's R². `tangent_to_world` turns them into world-space normals with the texels' frames.
"""
from __future__ import annotations

import math

import kornia
import torch

from .baked import BakedLighting
from .texels import TexelGeometry


NORMAL_SCALE = 0.1  # slope per unit of high-passed log luminance at normal_strength 1, relief 1
SHADING_SIGMA = 2.0  # texels: the high-pass scale of shape from shading
SHADING_SHRINK = 0.5  # shading tilts are shrunk by this much (see `shading_tilt`)
# R² of the light fit below which detail normals are all height field, above which all shape from
# shading. Measured: SheenChair baked under a sun 0.94 (fabric); distilled demo-room textures 0-0.29
# (a few large faces of different colours can correlate with their normals by chance).
SHADING_EXPLAINED = (0.4, 0.8)


def masked_blur(image: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of `[C, H, W]` that ignores texels outside `mask` (normalised convolution)."""
    size = 2 * int(math.ceil(3 * sigma)) + 1
    weight = mask.to(image.dtype)[None, None]
    num = kornia.filters.gaussian_blur2d(image[None] * weight, (size, size), (sigma, sigma), border_type="reflect")
    den = kornia.filters.gaussian_blur2d(weight, (size, size), (sigma, sigma), border_type="reflect")
    return (num / den.clamp_min(1e-6))[0]


def height_normals(lum_image: torch.Tensor, mask: torch.Tensor, strength: float, sigma: float = 4.0) -> torch.Tensor:
    """Tangent-space normals `[3, H, W]` (+Y up the image) from high-frequency luminance.

    Height = log luminance minus its masked Gaussian blur (the low frequencies
    are shading and colour, not relief); slopes from kornia's Sobel.
    """
    log_lum = torch.log(lum_image.clamp_min(1e-4))[None]  # [1, H, W]
    height = (log_lum - masked_blur(log_lum, mask, sigma)) * mask.to(log_lum.dtype)
    grad = kornia.filters.spatial_gradient(height[None], mode="sobel", normalized=True)[0, 0]  # [2, H, W]
    gx, gy = grad[0], grad[1]
    normal = torch.stack([-strength * gx, strength * gy, torch.ones_like(gx)], dim=0)
    normal = normal / normal.norm(dim=0, keepdim=True)
    flat = torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1)
    return torch.where(mask[None], normal, flat)


def _ramp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def shading_tilt(lum_image: torch.Tensor, geometry: TexelGeometry, occlusion: torch.Tensor,
                 lighting: BakedLighting, sigma: float = SHADING_SIGMA) -> torch.Tensor:
    """Tangent-space tilts `[N, 2]` of the detail normal from the baked sun's shading (shape from shading).

    Under the fitted light, a small tilt `τ` of the normal changes `n·l` by `τ · l_t` (`l_t` the
    sun's direction in the texel's tangent plane), so the high-pass of the log luminance
    `r ≈ δ(n·l) sun/π / E` (`E` = ambient + sun n·l/π) gives the tilt *along* `l_t`; the
    component across it is invisible under one light and left at 0 (the minimum-norm tilt).
    Only texels the sun lights (n·l > 0.1), not in deep occlusion, and whose high-pass
    neighbourhood lies on the island are used; `r` also holds albedo detail and the bake's
    AO noise, so the estimate is clipped at 1.5 robust standard deviations and shrunk by
    `SHADING_SHRINK` (a Wiener-style factor for a signal-to-noise of about one).
    """
    count = geometry.index.numel()
    if lighting.sun <= 1e-6 or count == 0:
        return torch.zeros(count, 2)
    mask = geometry.mask
    log_lum = torch.log(lum_image.clamp_min(1e-4))[None]
    residual = (log_lum - masked_blur(log_lum, mask, sigma))[0].reshape(-1)[geometry.index]
    size = 2 * int(math.ceil(3 * sigma)) + 1
    coverage = kornia.filters.gaussian_blur2d(mask.float()[None, None], (size, size), (sigma, sigma),
                                              border_type="constant")[0, 0].reshape(-1)[geometry.index]
    sun_dir = lighting.sun_dir.to(geometry.normal)
    n_dot_l = (geometry.normal * sun_dir).sum(-1)
    sun_lambert = lighting.sun / math.pi
    irradiance = lighting.ambient + sun_lambert * n_dot_l.clamp_min(0.0)
    delta_n_dot_l = residual * irradiance / sun_lambert
    weight = _ramp(n_dot_l, 0.1, 0.3) * _ramp(occlusion, 0.3, 0.6) * _ramp(coverage, 0.9, 1.0)
    trusted = weight > 0.5
    if int(trusted.sum()) < 16:
        return torch.zeros(count, 2)
    values = delta_n_dot_l[trusted]
    spread = 1.4826 * float((values - values.median()).abs().median())
    delta_n_dot_l = delta_n_dot_l.clamp(-1.5 * spread, 1.5 * spread)
    light_t = torch.stack([(geometry.tangent * sun_dir).sum(-1), (geometry.bitangent * sun_dir).sum(-1)], dim=-1)
    # The regulariser keeps texels that face the sun (l_t ≈ 0, tilt unobservable) near flat.
    return SHADING_SHRINK * (weight * delta_n_dot_l)[:, None] * light_t / (light_t.pow(2).sum(-1, keepdim=True) + 0.1)


def detail_normals(lum_image: torch.Tensor, geometry: TexelGeometry, occlusion: torch.Tensor,
                   lighting: BakedLighting, strength: float) -> torch.Tensor:
    """Tangent-space normals `[3, H, W]`: shape from the baked sun's shading where the bake has one,
    the height-field heuristic where its luminance detail is albedo (see the module docstring).

    The two are blended by how much of the luminance the fitted light explains
    (`lighting.explained`, R²): a texture with baked directional light (a scan, a bake)
    holds shading, a distilled or painted texture holds colour.
    """
    mask = geometry.mask
    height_ts = height_normals(lum_image, mask, strength * NORMAL_SCALE)
    low, high = SHADING_EXPLAINED
    share = float(min(1.0, max(0.0, (lighting.explained - low) / (high - low))))
    if share <= 0.0 or strength <= 0.0:
        return height_ts
    height_tilt = height_ts[:2] / height_ts[2:3]  # [2, H, W]
    tilt = torch.zeros(2, mask.numel())
    tilt[:, geometry.index] = strength * shading_tilt(lum_image, geometry, occlusion, lighting).T
    tilt = share * tilt.reshape(2, *mask.shape) + (1.0 - share) * height_tilt
    normal = torch.cat([tilt, torch.ones_like(tilt[:1])], dim=0)
    normal = normal / normal.norm(dim=0, keepdim=True)
    flat = torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1)
    return torch.where(mask[None], normal, flat)


def tangent_to_world(normal_ts: torch.Tensor, geometry: TexelGeometry) -> torch.Tensor:
    """`[N, 3]` tangent-space normals -> world space with the texels' (t, b, n) frames."""
    world = (normal_ts[:, 0:1] * geometry.tangent + normal_ts[:, 1:2] * geometry.bitangent
             + normal_ts[:, 2:3] * geometry.normal)
    return world / world.norm(dim=-1, keepdim=True).clamp_min(1e-8)
