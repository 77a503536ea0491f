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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch

from nodes.types import PBRMaps

from .ggx import sample_lights_toward_specular, shade
from .materials import MaterialPrior
from .relief import atlas_height_normals
from .texels import TexelGeometry

LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
CHROMA_WEIGHT = 0.5
RANGE_WEIGHT = 20.0
ALBEDO_WEIGHT = 1.0
TYPICAL_WEIGHT = 0.1  # Gaussian prior around the class's typical value (sigma = half its range)
MIN_SHADING_OCCLUSION = 0.1
MIN_CHANNEL_FOR_SPECULAR = 2e-3  # linear; below an 8-bit sRGB texture's first few levels
AO_TRUST = 0.5  # below this AO a texel's albedo is blended toward its better-lit neighbours
MIN_LIGHT_SCALE = 0.25  # beyond a 4x correction the texture more likely holds no baked specular at all
MATERIAL_LR_FACTOR = 0.2  # roughness/metallic move slower than albedo: the loss constrains them weakly
NORMAL_SCALE = 0.1  # slope per unit of high-passed log luminance at normal_strength 1, relief 1
SHADING_SIGMA = 2.0  # texels: the high-pass scale of shape from shading
SHADING_SHRINK = 0.5  # shading tilts are shrunk by this much (see `shading_tilt`)
# R² of the light fit below which detail normals are all height field, above which all shape from
# shading. Measured: SheenChair baked under a sun 0.94 (fabric); distilled demo-room textures 0-0.29
# (a few large faces of different colours can correlate with their normals by chance).
SHADING_EXPLAINED = (0.4, 0.8)


@dataclass(frozen=True)
class BakedLighting:
    """Sky radiance and one directional light (see the module docstring)."""

    ambient: float
    sun_dir: torch.Tensor  # [3] unit, towards the light
    sun: float
    # Share of the variance of log(lum / AO) that the sky + sun model explains (R²): how much of
    # the texture's luminance is baked directional shading rather than albedo.
    explained: float = 0.0

    def irradiance(self, normal: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """What multiplies a Lambert albedo `[N]`: `AO (ambient + sun max(n·l, 0) / π)`."""
        n_dot_l = (normal * self.sun_dir.to(normal)).sum(-1).clamp_min(0.0)
        return occlusion * (self.ambient + self.sun * n_dot_l / math.pi)

    def scaled(self, factor: float) -> BakedLighting:
        return BakedLighting(self.ambient * factor, self.sun_dir, self.sun * factor, self.explained)

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"ambient": float(self.ambient), "sun": float(self.sun),
                "sun_dir": [float(x) for x in self.sun_dir.tolist()], "explained": float(self.explained)}


def luminance(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rec. 709 luminance of linear RGB along `dim`."""
    shape = [1] * rgb.dim()
    shape[dim] = 3
    return (rgb * LUMA.to(rgb).reshape(shape)).sum(dim)


def estimate_baked_lighting(lum: torch.Tensor, normal: torch.Tensor, occlusion: torch.Tensor,
                            iterations: int = 30) -> BakedLighting:
    """Fit the baked light to the luminance; normalised to mean irradiance 1.

    Model: `log(lum / AO) ≈ b + log(1 + max(n·c, 0))`, i.e. a sky of radiance 1
    plus a sun `c` (in sky units), with one constant albedo `exp(b)`. The log
    makes the albedo's texture (multiplicative) an additive residual instead
    of a weight. L-BFGS from six axis-aligned starts (the clamp makes the
    problem non-convex); a small ridge keeps the sun small when the normals
    cannot tell it from the sky (a flat instance). Texels with AO < 0.2 are
    left out (too dark to say anything about the lights).
    """
    keep = (occlusion > 0.2) & (lum > 1e-5)
    if int(keep.sum()) < 8:
        return BakedLighting(1.0, torch.tensor([0.0, 1.0, 0.0]), 0.0)
    target = torch.log(lum[keep] / occlusion[keep]).to(torch.float64)
    normals = normal[keep].to(torch.float64)
    ridge_weight = 1e-3
    best_loss, best = math.inf, torch.zeros(4, dtype=torch.float64)
    for axis in range(6):
        start = torch.zeros(4, dtype=torch.float64)
        start[0] = target.mean()
        start[1 + axis % 3] = 1.0 if axis < 3 else -1.0
        params = start.requires_grad_(True)
        optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            model = params[0] + torch.log1p(torch.relu(normals @ params[1:]))
            loss = ((model - target) ** 2).mean() + ridge_weight * (params[1:] ** 2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            loss = float(((params[0] + torch.log1p(torch.relu(normals @ params[1:])) - target) ** 2).mean())
        if math.isfinite(loss) and loss < best_loss:
            best_loss, best = loss, params.detach().clone()
    c = best[1:].to(torch.float32)
    strength = float(c.norm())
    sun_dir = c / strength if strength > 1e-8 else torch.tensor([0.0, 1.0, 0.0])
    variance = float(target.var())
    explained = max(0.0, 1.0 - best_loss / variance) if variance > 1e-12 and math.isfinite(best_loss) else 0.0
    # The sun's Lambert term is albedo/π · E · cos; the sky's is albedo · L: E = π · strength.
    lighting = BakedLighting(1.0, sun_dir, math.pi * strength, explained)
    scale = float(lighting.irradiance(normal, occlusion).mean().clamp_min(1e-8))
    return lighting.scaled(1.0 / scale)


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


@dataclass(frozen=True)
class BakeView:
    """How one instance's texels are seen in its bake, fixed while it is decomposed."""

    normal_world: torch.Tensor  # [N, 3] detail normals
    view_dir: torch.Tensor  # [N, 3]: the geometric normal (a bake is seen along it)
    occlusion: torch.Tensor  # [N] shading AO, at least MIN_SHADING_OCCLUSION
    generator: torch.Generator  # the light samples' random stream

    def render(self, albedo: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor,
               lighting: BakedLighting, light_samples: int) -> torch.Tensor:
        """`render_baked` of these texels with the given maps."""
        return render_baked(albedo, roughness, metallic, self.normal_world, self.view_dir, self.occlusion,
                            lighting, light_samples, self.generator)


def solve_albedo(texels: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor, view: BakeView,
                 lighting: BakedLighting, light_samples: int) -> torch.Tensor:
    """The albedo `[N, 3]` whose baked render equals `texels`, other maps fixed.

    The render is affine in albedo (Lambert term and `F0 = lerp(0.04, albedo,
    metallic)` both are), so two renders with albedo 0 and 1 under the same
    light samples give it in closed form; clamped to [1e-3, 1].
    """
    state = view.generator.get_state()
    zeros = torch.zeros_like(texels)
    with torch.no_grad():
        base = view.render(zeros, roughness, metallic, lighting, light_samples)
        view.generator.set_state(state)
        gain = view.render(zeros + 1.0, roughness, metallic, lighting, light_samples) - base
    albedo = ((texels - base) / gain.clamp_min(1e-4)).clamp(1e-3, 1.0)
    # Texels where the model explains little (deep crevices, AO noise) give outliers; cap them at
    # a high quantile of the well-lit texels' albedo.
    lit = gain.mean(-1) > 0.5 * gain.mean()
    if int(lit.sum()) >= 16:
        cap = torch.quantile(albedo[lit], 0.99, dim=0)
        albedo = torch.minimum(albedo, cap[None])
    return albedo


def bound_light_scale(texels: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor, view: BakeView,
                      lighting: BakedLighting, light_samples: int, quantile: float = 0.1) -> BakedLighting:
    """Lower the light's scale until the specular reflection fits under the appearance.

    Albedo and light intensity trade off freely in the diffuse term, but a
    dielectric's specular (F0 = 0.04, white) does not scale with albedo, and
    albedo >= 0 means the specular can never exceed the darkest colour
    channel. The light scale (at most 1 = mean irradiance 1) is the
    `quantile` over texels of `min channel / specular`; metals (specular
    driven by albedo) leave it at 1. Only texels with AO > 0.5 vote.
    """
    state = view.generator.get_state()
    with torch.no_grad():
        specular = view.render(torch.zeros_like(texels), roughness, metallic, lighting, light_samples)
    view.generator.set_state(state)
    specular_lum = luminance(specular)
    # Only open texels vote (in crevices the AO estimate, not the light, dominates the ratio), and
    # only where every channel holds some light: a texture with an exactly black channel (a pure
    # albedo, a saturated print) carries no specular floor to measure.
    darkest = texels.min(dim=-1).values
    valid = (specular_lum > 1e-6) & (view.occlusion > 0.5) & (darkest > MIN_CHANNEL_FOR_SPECULAR)
    if int(valid.sum()) < max(8, int(0.05 * texels.shape[0])):
        return lighting
    ratio = darkest[valid] / specular_lum[valid]
    factor = float(torch.quantile(ratio, quantile).clamp(MIN_LIGHT_SCALE, 1.0))
    return lighting.scaled(factor)


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
