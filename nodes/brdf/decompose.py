"""Baked appearance texture -> PBR maps (albedo, roughness, metallic, normal, AO).

The model of a baked appearance (what `render_baked` computes, and what the
decomposition inverts) is the texel's radiance seen *along its geometric
normal* (a view-independent bake) under:
- a uniform sky of radiance `ambient` (occluded by the ambient occlusion `AO`;
  its diffuse part integrates exactly to `albedo (1 - metallic) ambient`, its
  specular part is estimated with lights importance-sampled toward the
  specular direction);
- one directional "sun" of irradiance `sun` from `sun_dir` (also scaled by AO:
  a bake has no separate shadow information, AO stands in for it),
all through the GGX BRDF of `nodes.brdf.ggx` with the detail normal.

Decomposition, per instance:
1. geometry per texel (world position, normal, tangent frame), ambient
   occlusion ray-cast against the whole scene;
2. baked lighting estimate: the luminance is fitted by least squares as
   `lum / AO ≈ c0 + n·c` (one constant albedo, ambient `c0`, sun vector `c`);
   the irradiance `E = AO (c0 + max(n·c, 0))` is normalised to mean 1 over the
   instance (the light/albedo scale is ambiguous; this keeps the albedo's
   mean brightness that of the appearance), and the initial albedo is
   `appearance / E` — this removes AO and n·l from the albedo;
3. tangent-space normals from a height field: the high-pass of the log
   luminance (luminance over its masked Gaussian blur) is taken as height,
   its kornia Sobel gradient gives `n = normalize(-s gx, s gy, 1)` (+Y up the
   image), `s = normal_strength × class relief`;
4. roughness and metallic start at the class's typical values; then Adam
   minimises the re-rendering loss (IntrinsiX):
   `L = |render_baked(θ) - appearance|² / |appearance|²` (the decomposition
   rendered under the estimated baked lighting, with `light_samples` sky
   directions importance-sampled toward the specular lobe, resampled every
   step) `+ w_chroma TV(albedo chromaticity)` (albedo chromaticity is
   piecewise smooth) `+ w_range (distance of roughness/metallic outside the
   class range)²` `+ w_albedo relu(albedo - 1)²` `+ w_rough TV(roughness)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch

from nodes.types import PBRMaps

from .ggx import sample_lights_toward_specular, shade
from .materials import MaterialPrior
from .texels import TexelGeometry

LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
CHROMA_WEIGHT = 0.5
RANGE_WEIGHT = 20.0
ALBEDO_WEIGHT = 1.0
ROUGHNESS_TV_WEIGHT = 0.02


@dataclass(frozen=True)
class BakedLighting:
    """Sky radiance and one directional light (see the module docstring)."""

    ambient: float
    sun_dir: torch.Tensor  # [3] unit, towards the light
    sun: float

    def irradiance(self, normal: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """Diffuse irradiance factor `[N]`: `AO (ambient + sun max(n·l, 0))`."""
        n_dot_l = (normal * self.sun_dir.to(normal)).sum(-1).clamp_min(0.0)
        return occlusion * (self.ambient + self.sun * n_dot_l)

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"ambient": float(self.ambient), "sun": float(self.sun),
                "sun_dir": [float(x) for x in self.sun_dir.tolist()]}


def luminance(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rec. 709 luminance of linear RGB along `dim`."""
    shape = [1] * rgb.dim()
    shape[dim] = 3
    return (rgb * LUMA.to(rgb).reshape(shape)).sum(dim)


def estimate_baked_lighting(lum: torch.Tensor, normal: torch.Tensor, occlusion: torch.Tensor) -> BakedLighting:
    """Fit `lum / AO ≈ c0 + n·c` and normalise so that the mean irradiance is 1.

    Ridge-regularised (a flat instance cannot tell ambient from sun; the ridge
    then keeps the sun small). Texels with AO < 0.2 are left out (too dark to
    say anything about the lights).
    """
    keep = occlusion > 0.2
    if int(keep.sum()) < 8:
        return BakedLighting(1.0, torch.tensor([0.0, 1.0, 0.0]), 0.0)
    target = (lum[keep] / occlusion[keep]).to(torch.float64)
    design = torch.cat([torch.ones_like(target)[:, None], normal[keep].to(torch.float64)], dim=1)
    ridge = torch.diag(torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64)) * 1e-2 * design.shape[0]
    coeffs = torch.linalg.solve(design.T @ design + ridge, design.T @ target)
    c0, c = float(coeffs[0]), coeffs[1:].to(torch.float32)
    sun = float(c.norm())
    sun_dir = c / sun if sun > 1e-8 else torch.tensor([0.0, 1.0, 0.0])
    # The clamp max(n·l, 0) makes the linear fit's intercept too low on the shadowed side;
    # keep at least a tenth of the light in the sky so the irradiance never reaches zero.
    c0 = max(c0, 0.1 * (abs(c0) + sun), 1e-6)
    lighting = BakedLighting(c0, sun_dir, sun)
    scale = float(lighting.irradiance(normal, occlusion).mean().clamp_min(1e-8))
    return BakedLighting(c0 / scale, sun_dir, sun / scale)


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


def tangent_to_world(normal_ts: torch.Tensor, geometry: TexelGeometry) -> torch.Tensor:
    """`[N, 3]` tangent-space normals -> world space with the texels' (t, b, n) frames."""
    world = (normal_ts[:, 0:1] * geometry.tangent + normal_ts[:, 1:2] * geometry.bitangent
             + normal_ts[:, 2:3] * geometry.normal)
    return world / world.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def render_baked(
    albedo: torch.Tensor,
    roughness: torch.Tensor,
    metallic: torch.Tensor,
    normal_world: torch.Tensor,
    view_dir: torch.Tensor,
    occlusion: torch.Tensor,
    lighting: BakedLighting,
    light_samples: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The baked radiance `[N, 3]` of a decomposition under `lighting` (module docstring)."""
    occ = occlusion[:, None]
    sky_diffuse = albedo * (1.0 - metallic) * lighting.ambient
    radiance = sky_diffuse
    if light_samples > 0:
        with torch.no_grad():
            dirs, pdf = sample_lights_toward_specular(normal_world, view_dir, roughness, light_samples, generator)
        weights = 1.0 / (pdf * light_samples)
        sky_radiance = torch.full((1, 1), lighting.ambient).to(albedo)
        radiance = radiance + shade(albedo, roughness, metallic, normal_world, view_dir, dirs, sky_radiance,
                                    light_weights=weights, diffuse=False)
    if lighting.sun > 0:
        sun_dir = lighting.sun_dir.to(albedo)[None]
        sun_radiance = torch.full((1, 1), lighting.sun).to(albedo)
        radiance = radiance + shade(albedo, roughness, metallic, normal_world, view_dir, sun_dir, sun_radiance)
    return radiance * occ


def _grid_tv(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 difference of `[N, C]` texel values between covered 4-neighbours."""
    height, width = mask.shape
    channels = values.shape[1]
    image = torch.zeros(height * width, channels, dtype=values.dtype).index_copy(0, index, values)
    image = image.reshape(height, width, channels)
    right = (mask[:, 1:] & mask[:, :-1])[..., None]
    down = (mask[1:, :] & mask[:-1, :])[..., None]
    tv_x = ((image[:, 1:] - image[:, :-1]).abs() * right).sum()
    tv_y = ((image[1:] - image[:-1]).abs() * down).sum()
    pairs = (right.sum() + down.sum()).clamp_min(1) * channels
    return (tv_x + tv_y) / pairs


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def _hinge(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return (torch.relu(lo - x) ** 2 + torch.relu(x - hi) ** 2).mean()


def _scatter(values: torch.Tensor, geometry: TexelGeometry, fill: list[float]) -> torch.Tensor:
    """`[N, C]` texel values -> `[C, H, W]` image, `fill` outside the mask."""
    height, width = geometry.size
    channels = values.shape[1]
    image = torch.tensor(fill, dtype=values.dtype)[None].repeat(height * width, 1)
    image[geometry.index] = values.detach()
    return image.reshape(height, width, channels).permute(2, 0, 1).contiguous()


def decompose_texture(
    appearance: torch.Tensor,
    geometry: TexelGeometry,
    occlusion: torch.Tensor,
    prior: MaterialPrior,
    material: str,
    *,
    steps: int = 80,
    lr: float = 0.05,
    normal_strength: float = 1.0,
    light_samples: int = 8,
    generator: torch.Generator,
    progress: object | None = None,
) -> PBRMaps:
    """Decompose one instance's baked `appearance` `[3, H, W]` on the atlas of `geometry`.

    `occlusion` `[N]` is the ambient occlusion of `geometry`'s texels.
    `progress` (optional) is a bar with `.update(**info)`.
    """
    mask = geometry.mask
    index = geometry.index
    height, width = geometry.size
    texels = appearance.reshape(3, -1).T[index].to(torch.float32).clamp_min(0.0)  # [N, 3]
    lum = luminance(texels)
    lighting = estimate_baked_lighting(lum, geometry.normal, occlusion)
    irradiance = lighting.irradiance(geometry.normal, occlusion).clamp_min(0.05)
    albedo0 = (texels / irradiance[:, None]).clamp(1e-3, 1.0)

    lum_image = luminance(appearance.clamp_min(0.0), dim=0)
    normal_ts_image = height_normals(lum_image, mask, normal_strength * prior.relief * 4.0)
    normal_ts = normal_ts_image.reshape(3, -1).T[index]
    normal_world = tangent_to_world(normal_ts, geometry)
    view_dir = geometry.normal  # the bake is seen along the geometric normal

    log_albedo = torch.log(albedo0).clone().requires_grad_(True)
    z_rough = torch.full((texels.shape[0], 1), _logit(prior.roughness_typical), requires_grad=True)
    metallic_free = prior.metallic[1] > prior.metallic[0]
    z_metal = torch.full((texels.shape[0], 1), _logit(prior.metallic_typical), requires_grad=metallic_free)
    variables = [log_albedo, z_rough] + ([z_metal] if metallic_free else [])
    optimizer = torch.optim.Adam(variables, lr=lr)
    target_energy = (texels ** 2).mean().clamp_min(1e-8)

    def current() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        albedo = torch.exp(log_albedo)
        roughness = torch.sigmoid(z_rough)
        metallic = torch.sigmoid(z_metal) if metallic_free else torch.full_like(z_rough, prior.metallic[0])
        return albedo, roughness, metallic

    losses: list[float] = []
    for _ in range(steps):
        albedo, roughness, metallic = current()
        render = render_baked(albedo, roughness, metallic, normal_world, view_dir, occlusion, lighting,
                              light_samples, generator)
        data = ((render - texels) ** 2).mean() / target_energy
        chroma = albedo / albedo.sum(-1, keepdim=True).clamp_min(1e-4)
        loss = (data
                + CHROMA_WEIGHT * _grid_tv(chroma, index, mask)
                + RANGE_WEIGHT * _hinge(roughness, *prior.roughness)
                + ROUGHNESS_TV_WEIGHT * _grid_tv(roughness, index, mask)
                + ALBEDO_WEIGHT * (torch.relu(albedo - 1.0) ** 2).mean())
        if metallic_free:
            loss = loss + RANGE_WEIGHT * _hinge(metallic, *prior.metallic)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(data))
        if progress is not None:
            progress.update(loss=round(float(loss), 5))

    with torch.no_grad():
        albedo, roughness, metallic = current()
        roughness = roughness.clamp(*prior.roughness)
        metallic = metallic.clamp(*prior.metallic)
        albedo = albedo.clamp(0.0, 1.0)
    return PBRMaps(
        albedo=_scatter(albedo, geometry, [0.0, 0.0, 0.0]),
        roughness=_scatter(roughness, geometry, [prior.roughness_typical]),
        metallic=_scatter(metallic, geometry, [prior.metallic_typical]),
        normal=normal_ts_image.contiguous(),
        occlusion=_scatter(occlusion[:, None], geometry, [1.0]),
        mask=mask.clone(),
        material=material,
        info={
            "lighting": lighting.as_dict(),
            "steps": steps,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "texels": int(index.numel()),
            "size": [height, width],
        },
    )
