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
2. baked lighting estimate (`estimate_baked_lighting`): the log luminance is
   fitted as `log(lum / AO) ≈ b + log(1 + max(n·c, 0))` (one constant
   albedo, sky 1, sun `c`), and the light normalised to mean irradiance 1
   over the instance (light and albedo trade off freely in the diffuse
   term). A dielectric's white specular does not scale with albedo and can
   never exceed the darkest colour channel, which bounds the light's scale
   from above (`bound_light_scale`, at most a 4x correction). The initial
   albedo is the closed-form solution of the render (affine in albedo,
   `solve_albedo`): this removes AO, n·l and the baked specular;
3. tangent-space detail normals, from two sources blended by how much of
   the luminance the fitted light explains (R² of step 2): where the bake
   holds directional light, shape from shading (`shading_tilt`: the
   high-pass of the log luminance is the change of n·l, i.e. the tilt
   along the sun's tangent direction; across it nothing is observable);
   where it does not (a distilled or painted texture), a height field: the
   high-pass of the log luminance (luminance over its masked Gaussian blur)
   is taken as height (dark crevices are low), its kornia Sobel gradient
   gives `n = normalize(-s gx, s gy, 1)` (+Y up the image), `s =
   NORMAL_SCALE × normal_strength × class relief`. Both are scaled by the
   class relief: smooth classes (relief 0) stay flat;
4. roughness and metallic start at the class's typical values; then Adam
   minimises the re-rendering loss (IntrinsiX):
   `L = |render_baked(θ) - appearance|² / |appearance|²` (the decomposition
   rendered under the estimated baked lighting, with `light_samples` sky
   directions importance-sampled toward the specular lobe, resampled every
   step) `+ w_chroma TV(albedo chromaticity)` (albedo chromaticity is
   piecewise smooth) `+ w_range (distance of roughness/metallic outside the
   class range)²` `+ w_typical ((value - typical) / half range)²` `+ w_albedo
   relu(albedo - 1)²`. Roughness and metallic are one value per instance
   (one material). AO below 0.1 is clamped in the shading model (a few rays
   cannot tell 0 from 0.05 in a crevice); the output occlusion map is the
   ray-cast AO itself.

Measured on SheenChair (tests/brdf/test_brdf_acceptance.py): a single baked
image barely constrains roughness (the loss is flat in it once albedo
adapts), so roughness/metallic come mostly from the class priors; albedo,
AO and n·l removal are where the re-rendering pays. The fabric's detail
normals beat flat ones only modestly (3.83° vs 3.86° mean error): one light
shows one tilt component, and the bake's AO noise is as strong as the relief.

Where the steps live: `nodes.brdf.baked` (the model `render_baked`, the light fit of step 2, the
closed-form albedo), `nodes.brdf.normals` (step 3); this module fits the materials (step 4) and lays
the maps out (`decompose_texture`, and `unlit_maps` for an appearance nothing lit).
"""
from __future__ import annotations

import math

import kornia
import torch

from nodes.types import PBRMaps

from .baked import BakedLighting, BakeView, bound_light_scale, estimate_baked_lighting, luminance, solve_albedo
from .materials import MaterialPrior
from .normals import NORMAL_SCALE, detail_normals, height_normals, tangent_to_world
from .relief import atlas_height_normals
from .texels import TexelGeometry

CHROMA_WEIGHT = 0.5
RANGE_WEIGHT = 20.0
ALBEDO_WEIGHT = 1.0
TYPICAL_WEIGHT = 0.1  # Gaussian prior around the class's typical value (sigma = half its range)
MIN_SHADING_OCCLUSION = 0.1
AO_TRUST = 0.5  # below this AO a texel's albedo is blended toward its better-lit neighbours
MATERIAL_LR_FACTOR = 0.2  # roughness/metallic move slower than albedo: the loss constrains them weakly


def fill_unreliable(albedo: torch.Tensor, trust: torch.Tensor, geometry: TexelGeometry,
                    sigma: float = 3.0) -> torch.Tensor:
    """Blend each texel's albedo `[N, 3]` toward a trust-weighted blur of its neighbours.

    In crevices (low AO) the appearance is dark and the AO estimate noisy, so
    `appearance / irradiance` there is mostly noise and residual shading; a
    texel keeps `trust` (in [0, 1]) of its own value and takes the rest from
    the neighbourhood's trusted texels (the instance's trusted mean where
    none is near).
    """
    height, width = geometry.size
    weighted = torch.zeros(4, height * width)
    weighted[:3, geometry.index] = (albedo * trust[:, None]).T
    weighted[3, geometry.index] = trust
    size = 2 * int(math.ceil(3 * sigma)) + 1
    blurred = kornia.filters.gaussian_blur2d(weighted.reshape(1, 4, height, width), (size, size), (sigma, sigma),
                                             border_type="constant")[0].reshape(4, -1)[:, geometry.index]
    total = float(trust.sum())
    fallback = (albedo * trust[:, None]).sum(0) / total if total > 1e-6 else albedo.mean(0)
    near = blurred[3] > 1e-3
    neighbours = torch.where(near[:, None], (blurred[:3] / blurred[3].clamp_min(1e-3)).T, fallback[None])
    return trust[:, None] * albedo + (1.0 - trust[:, None]) * neighbours


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


def _typical_pull(value: torch.Tensor, typical: float, value_range: tuple[float, float]) -> torch.Tensor:
    sigma = max(0.5 * (value_range[1] - value_range[0]), 0.05)
    return (((value - typical) / sigma) ** 2).mean()


def _scatter(values: torch.Tensor, geometry: TexelGeometry, fill: list[float]) -> torch.Tensor:
    """`[N, C]` texel values -> `[C, H, W]` image, `fill` outside the mask."""
    height, width = geometry.size
    channels = values.shape[1]
    image = torch.tensor(fill, dtype=values.dtype)[None].repeat(height * width, 1)
    image[geometry.index] = values.detach()
    return image.reshape(height, width, channels).permute(2, 0, 1).contiguous()


class _MaterialVariables:
    """What Adam optimises: the texels' log albedo and one roughness and one metallic logit per instance."""

    def __init__(self, albedo0: torch.Tensor, prior: MaterialPrior) -> None:
        self.prior = prior
        self.log_albedo = torch.log(albedo0).clone().requires_grad_(True)
        # One roughness and one metallic per instance (an instance is one material): a per-texel
        # value would be unconstrained by a single baked image and drift with the sampling noise.
        self.count = albedo0.shape[0]
        self.z_rough = torch.full((1, 1), _logit(prior.roughness_typical), requires_grad=True)
        self.metallic_free = prior.metallic[1] > prior.metallic[0]
        self.z_metal = torch.full((1, 1), _logit(prior.metallic_typical), requires_grad=self.metallic_free)

    def optimizer(self, lr: float) -> torch.optim.Adam:
        material_variables = [self.z_rough] + ([self.z_metal] if self.metallic_free else [])
        return torch.optim.Adam([{"params": [self.log_albedo], "lr": lr},
                                 {"params": material_variables, "lr": lr * MATERIAL_LR_FACTOR}])

    def current(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Albedo `[N, 3]`, roughness and metallic `[N, 1]`."""
        albedo = torch.exp(self.log_albedo)
        roughness = torch.sigmoid(self.z_rough).expand(self.count, 1)
        metallic = (torch.sigmoid(self.z_metal) if self.metallic_free
                    else torch.full_like(self.z_rough, self.prior.metallic[0]))
        metallic = metallic.expand(self.count, 1)
        return albedo, roughness, metallic

    def loss(self, data: torch.Tensor, albedo: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor,
             index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The re-rendering loss `data` plus the priors on the maps (module docstring, step 4)."""
        prior = self.prior
        chroma = albedo / albedo.sum(-1, keepdim=True).clamp_min(1e-4)
        loss = (data
                + CHROMA_WEIGHT * _grid_tv(chroma, index, mask)
                + RANGE_WEIGHT * _hinge(roughness, *prior.roughness)
                + TYPICAL_WEIGHT * _typical_pull(roughness[:1], prior.roughness_typical, prior.roughness)
                + ALBEDO_WEIGHT * (torch.relu(albedo - 1.0) ** 2).mean())
        if self.metallic_free:
            loss = (loss + RANGE_WEIGHT * _hinge(metallic, *prior.metallic)
                    + TYPICAL_WEIGHT * _typical_pull(metallic[:1], prior.metallic_typical, prior.metallic))
        return loss


def _initial_albedo(texels: torch.Tensor, view: BakeView, ao_map: torch.Tensor, lighting: BakedLighting,
                    prior: MaterialPrior, geometry: TexelGeometry,
                    light_samples: int) -> tuple[BakedLighting, torch.Tensor]:
    """The light bounded by the baked specular, and the closed-form albedo under it at the class's typical
    roughness/metallic (crevices filled from trusted neighbours)."""
    roughness0 = torch.full((texels.shape[0], 1), prior.roughness_typical)
    metallic0 = torch.full((texels.shape[0], 1), prior.metallic_typical)
    lighting = bound_light_scale(texels, roughness0, metallic0, view, lighting, max(4 * light_samples, 32))
    albedo0 = solve_albedo(texels, roughness0, metallic0, view, lighting, max(4 * light_samples, 32))
    albedo0 = fill_unreliable(albedo0, (ao_map / AO_TRUST).clamp(0.0, 1.0), geometry)
    return lighting, albedo0


def _fit_materials(variables: _MaterialVariables, texels: torch.Tensor, view: BakeView, lighting: BakedLighting,
                   geometry: TexelGeometry, *, steps: int, lr: float, light_samples: int,
                   progress: object | None) -> list[float]:
    """Adam on the re-rendering loss; the data term of each step."""
    mask = geometry.mask
    index = geometry.index
    optimizer = variables.optimizer(lr)
    target_energy = (texels ** 2).mean().clamp_min(1e-8)
    losses: list[float] = []
    for _ in range(steps):
        albedo, roughness, metallic = variables.current()
        render = view.render(albedo, roughness, metallic, lighting, light_samples)
        data = ((render - texels) ** 2).mean() / target_energy
        loss = variables.loss(data, albedo, roughness, metallic, index, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(data.detach()))
        if progress is not None:
            progress.update(loss=round(float(loss.detach()), 5))
    return losses


def _decomposed_maps(variables: _MaterialVariables, geometry: TexelGeometry, ao_map: torch.Tensor,
                     normal_ts_image: torch.Tensor, lighting: BakedLighting, material: str, steps: int,
                     losses: list[float]) -> PBRMaps:
    """The fitted maps, clamped to the class's ranges, as images on the atlas."""
    mask = geometry.mask
    index = geometry.index
    height, width = geometry.size
    prior = variables.prior
    with torch.no_grad():
        albedo, roughness, metallic = variables.current()
        roughness = roughness.clamp(*prior.roughness)
        metallic = metallic.clamp(*prior.metallic)
        albedo = albedo.clamp(0.0, 1.0)
    return PBRMaps(
        albedo=_scatter(albedo, geometry, [0.0, 0.0, 0.0]),
        roughness=_scatter(roughness, geometry, [prior.roughness_typical]),
        metallic=_scatter(metallic, geometry, [prior.metallic_typical]),
        normal=normal_ts_image.contiguous(),
        occlusion=_scatter(ao_map[:, None], geometry, [1.0]),
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
    index = geometry.index
    texels = appearance.reshape(3, -1).T[index].to(torch.float32).clamp_min(0.0)  # [N, 3]
    lum = luminance(texels)
    lighting = estimate_baked_lighting(lum, geometry.normal, occlusion)
    ao_map = occlusion
    # A few AO rays cannot tell 0 from 0.05 in a crevice; dividing by ~0 would make outliers.
    occlusion = occlusion.clamp_min(MIN_SHADING_OCCLUSION)
    lum_image = luminance(appearance.clamp_min(0.0), dim=0)
    normal_ts_image = detail_normals(lum_image, geometry, ao_map, lighting, normal_strength * prior.relief)
    normal_ts = normal_ts_image.reshape(3, -1).T[index]
    normal_world = tangent_to_world(normal_ts, geometry)
    view_dir = geometry.normal  # the bake is seen along the geometric normal
    view = BakeView(normal_world, view_dir, occlusion, generator)

    lighting, albedo0 = _initial_albedo(texels, view, ao_map, lighting, prior, geometry, light_samples)
    variables = _MaterialVariables(albedo0, prior)
    losses = _fit_materials(variables, texels, view, lighting, geometry, steps=steps, lr=lr,
                            light_samples=light_samples, progress=progress)
    return _decomposed_maps(variables, geometry, ao_map, normal_ts_image, lighting, material, steps, losses)


def unlit_maps(appearance: torch.Tensor, geometry: TexelGeometry, occlusion: torch.Tensor, prior: MaterialPrior,
               material: str, *, normal_strength: float = 1.0, height: torch.Tensor | None = None,
               roughness: torch.Tensor | None = None) -> PBRMaps:
    """PBR maps of an appearance that carries no shading from the scene (a projected or distilled texture).

    Nothing lit it, so there is nothing to divide out: the albedo is the appearance itself (its colour is
    the swatch's), roughness and metallic are the class's typical values, the detail normals come from the
    height field of its fine luminance (smooth classes stay flat), and the occlusion map is the ray-cast
    AO for the renderer to apply to ambient light.

    Where the texture carries maps fitted from the swatch's photo (`TextureMap.height` / `roughness`,
    laid like the albedo), they win: the normals are the laid height's (`relief.atlas_height_normals`,
    times `normal_strength`), the roughness the laid map's (the fit already held it in the class's range).
    """
    mask = geometry.mask
    albedo = appearance.clamp(0.0, 1.0).to(torch.float32)
    if height is not None:
        normal = atlas_height_normals(height * normal_strength, geometry)
    else:
        normal = height_normals(luminance(albedo, dim=0), mask, normal_strength * prior.relief * NORMAL_SCALE)
    rows, cols = geometry.size
    rough = torch.full((1, rows, cols), prior.roughness_typical)
    if roughness is not None:
        rough = torch.where(mask[None], roughness.to(torch.float32).clamp(0.03, 1.0), rough)
    return PBRMaps(
        albedo=albedo.contiguous(),
        roughness=rough.contiguous(),
        metallic=torch.full((1, rows, cols), prior.metallic_typical),
        normal=normal.contiguous(),
        occlusion=_scatter(occlusion[:, None], geometry, [1.0]),
        mask=mask.clone(),
        material=material,
        info={"baked_shading": False, "texels": int(geometry.index.numel()), "size": [rows, cols],
              "relief": "laid height" if height is not None else "luminance height field",
              "roughness": "laid map" if roughness is not None else "class prior"},
        height=None if height is None else (height.to(torch.float32) * mask[None]).contiguous(),
    )
