"""The model of a baked appearance and its closed-form inverses (steps 2 and 4 of `nodes.brdf.decompose`).

`render_baked`: a texel's radiance seen along its geometric normal under a uniform sky and one
directional sun (`BakedLighting`), through the GGX BRDF of `nodes.brdf.ggx`, scaled by the ambient
occlusion. `estimate_baked_lighting` fits that light to a texture's luminance, `solve_albedo` inverts
the render for albedo (it is affine in albedo), `bound_light_scale` caps the light by the darkest
channel a dielectric's white specular allows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .ggx import sample_lights_toward_specular, shade


LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
MIN_CHANNEL_FOR_SPECULAR = 2e-3  # linear; below an 8-bit sRGB texture's first few levels
MIN_LIGHT_SCALE = 0.25  # beyond a 4x correction the texture more likely holds no baked specular at all


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
