"""A differentiable Cook-Torrance GGX shader on texel or pixel buffers.

Everything works on flat buffers: `[N, C]` per texel/pixel, lights `[N, L, 3]`
(per-texel directions) or `[L, 3]` (shared). Directions are unit vectors
pointing *away* from the surface (towards the viewer / the light). Light
radiance is the irradiance a light delivers at normal incidence (linear RGB),
so a light contributes `f_r · E · max(n·l, 0)`.

BRDF (glTF metallic-roughness model):
- `alpha = roughness²`, GGX (Trowbridge-Reitz) distribution `D`;
- separable Smith-GGX geometry `G = G1(n·l) G1(n·v)`;
- Schlick Fresnel with `F0 = lerp(0.04, albedo, metallic)`;
- Lambert diffuse `albedo / π` scaled by `(1 - metallic)`.
"""
from __future__ import annotations

import math

import torch

DIELECTRIC_F0 = 0.04
MIN_ROUGHNESS = 0.03  # GGX with alpha -> 0 is a delta; keep gradients finite
EPS = 1e-6


def fresnel_f0(albedo: torch.Tensor, metallic: torch.Tensor) -> torch.Tensor:
    """`F0 = lerp(0.04, albedo, metallic)`."""
    return DIELECTRIC_F0 + (albedo - DIELECTRIC_F0) * metallic


def ggx_distribution(n_dot_h: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    a2 = alpha * alpha
    denom = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    return a2 / (math.pi * denom * denom + EPS)


def smith_g1(n_dot_x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Smith masking for GGX: `2 n·x / (n·x + sqrt(a² + (1 - a²)(n·x)²))`."""
    a2 = alpha * alpha
    return 2.0 * n_dot_x / (n_dot_x + torch.sqrt(a2 + (1.0 - a2) * n_dot_x * n_dot_x) + EPS)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(EPS)


def shade(
    albedo: torch.Tensor,
    roughness: torch.Tensor,
    metallic: torch.Tensor,
    normal_world: torch.Tensor,
    view_dir: torch.Tensor,
    light_dirs: torch.Tensor,
    light_radiance: torch.Tensor,
    light_weights: torch.Tensor | None = None,
    diffuse: bool = True,
) -> torch.Tensor:
    """Outgoing radiance `[N, 3]` towards `view_dir` summed over lights.

    albedo `[N, 3]`, roughness/metallic `[N, 1]`, normal_world/view_dir `[N, 3]`,
    light_dirs `[N, L, 3]` or `[L, 3]`, light_radiance `[N, L, 3]`, `[L, 3]` or
    `[L, 1]`. `light_weights` `[N, L]` (optional) multiplies each light's term:
    Monte Carlo estimators pass `1 / (pdf · n_samples)` here. `diffuse=False`
    gives the specular lobe alone (when the diffuse part is integrated exactly).
    """
    n = _normalize(normal_world)[:, None, :]  # [N, 1, 3]
    v = _normalize(view_dir)[:, None, :]
    lights = light_dirs if light_dirs.dim() == 3 else light_dirs[None]
    l = _normalize(lights)  # [N|1, L, 3]
    h = _normalize(l + v)
    n_dot_l = (n * l).sum(-1, keepdim=True).clamp_min(0.0)  # [N, L, 1]
    n_dot_v = (n * v).sum(-1, keepdim=True).clamp_min(1e-4)
    n_dot_h = (n * h).sum(-1, keepdim=True).clamp(0.0, 1.0)
    v_dot_h = (v * h).sum(-1, keepdim=True).clamp(0.0, 1.0)

    alpha = (roughness.clamp(MIN_ROUGHNESS, 1.0) ** 2)[:, None, :]  # [N, 1, 1]
    f0 = fresnel_f0(albedo, metallic)[:, None, :]  # [N, 1, 3]
    fresnel = f0 + (1.0 - f0) * (1.0 - v_dot_h) ** 5
    d = ggx_distribution(n_dot_h, alpha)
    g = smith_g1(n_dot_l, alpha) * smith_g1(n_dot_v, alpha)
    specular = d * g * fresnel / (4.0 * n_dot_l * n_dot_v + EPS)
    brdf = specular
    if diffuse:
        brdf = brdf + (albedo * (1.0 - metallic))[:, None, :] / math.pi
    radiance = light_radiance if light_radiance.dim() == 3 else light_radiance[None]
    contribution = brdf * radiance * n_dot_l  # [N, L, 3]
    if light_weights is not None:
        contribution = contribution * light_weights[..., None]
    return contribution.sum(dim=1)


def tangent_frame(normal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any orthonormal (t, b) with `t × b = n`, stable for every n (Duff et al. 2017)."""
    x, y, z = normal.unbind(-1)
    sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    a = -1.0 / (sign + z)
    b = x * y * a
    t = torch.stack([1.0 + sign * x * x * a, sign * b, -sign * x], dim=-1)
    bt = torch.stack([b, sign + y * y * a, -y], dim=-1)
    return t, bt


def sample_lights_toward_specular(
    normal: torch.Tensor,
    view_dir: torch.Tensor,
    roughness: torch.Tensor,
    n: int,
    generator: torch.Generator,
    uniform_fraction: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Light directions concentrated around the specular reflection (IntrinsiX).

    Most samples are GGX half-vectors `h ~ D(h)(n·h)` around the normal,
    reflected about the view direction (so they cluster around the mirror
    direction with the lobe's width); `uniform_fraction` of them are uniform on
    the hemisphere so that diffuse and off-specular directions keep some
    weight. Returns `(dirs [N, n, 3], pdf [N, n])`: the pdf of the
    *mixture* over solid angle (for unbiased `f · L · cos / pdf` estimates).
    Directions below the surface have `n·l <= 0` and shade to zero.
    """
    count = normal.shape[0]
    n_uniform = max(1, int(round(n * uniform_fraction))) if n > 1 else 0
    n_ggx = n - n_uniform
    nrm = _normalize(normal)
    v = _normalize(view_dir)
    t, b = tangent_frame(nrm)
    alpha = roughness.clamp(MIN_ROUGHNESS, 1.0) ** 2  # [N, 1]

    u = torch.rand(count, n, 2, generator=generator).to(normal)
    # GGX half-vector sampling: cos²θ_h = (1 - u) / (1 + (a² - 1) u).
    a2 = (alpha * alpha)[:, :, None]  # [N, 1, 1]
    u1, u2 = u[..., 0:1], u[..., 1:2]
    cos_h = torch.sqrt((1.0 - u1) / (1.0 + (a2 - 1.0) * u1)).clamp(0.0, 1.0)
    sin_h = torch.sqrt((1.0 - cos_h * cos_h).clamp_min(0.0))
    phi = 2.0 * math.pi * u2
    h_local = torch.cat([sin_h * torch.cos(phi), sin_h * torch.sin(phi), cos_h], dim=-1)
    # Uniform hemisphere: cosθ = u1.
    cos_u = u1
    sin_u = torch.sqrt((1.0 - cos_u * cos_u).clamp_min(0.0))
    uni_local = torch.cat([sin_u * torch.cos(phi), sin_u * torch.sin(phi), cos_u], dim=-1)

    def to_world(local: torch.Tensor) -> torch.Tensor:
        return local[..., 0:1] * t[:, None] + local[..., 1:2] * b[:, None] + local[..., 2:3] * nrm[:, None]

    h = to_world(h_local[:, :n_ggx])
    v_b = v[:, None, :]
    reflected = 2.0 * (v_b * h).sum(-1, keepdim=True) * h - v_b
    dirs = torch.cat([reflected, to_world(uni_local[:, n_ggx:])], dim=1)
    dirs = _normalize(dirs)

    # Mixture pdf over solid angle for every direction (balance heuristic).
    hh = _normalize(dirs + v_b)
    n_dot_h = (nrm[:, None] * hh).sum(-1).clamp(0.0, 1.0)
    v_dot_h = (v_b * hh).sum(-1).clamp_min(1e-4)
    pdf_ggx = ggx_distribution(n_dot_h, alpha) * n_dot_h / (4.0 * v_dot_h)
    above = ((nrm[:, None] * dirs).sum(-1) > 0).to(dirs.dtype)
    pdf_uniform = above / (2.0 * math.pi)
    w_ggx = n_ggx / max(n, 1)
    pdf = w_ggx * pdf_ggx + (1.0 - w_ggx) * pdf_uniform
    return dirs, pdf.clamp_min(1e-6)
