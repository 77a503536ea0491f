"""The GGX shader and the specular light sampler."""
from __future__ import annotations

import math

import torch

from nodes.brdf.ggx import fresnel_f0, sample_lights_toward_specular, shade


def _up(n: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3).clone()


def test_f0_is_lerp_of_dielectric_and_albedo() -> None:
    albedo = torch.tensor([[0.9, 0.5, 0.1]])
    assert torch.allclose(fresnel_f0(albedo, torch.zeros(1, 1)), torch.full((1, 3), 0.04))
    assert torch.allclose(fresnel_f0(albedo, torch.ones(1, 1)), albedo)
    assert torch.allclose(fresnel_f0(albedo, torch.full((1, 1), 0.5)), 0.5 * (albedo + 0.04))


def test_lambert_under_a_uniform_sky_integrates_to_albedo() -> None:
    """White furnace: ∫ albedo/π · 1 · cos dω = albedo, estimated with the sampler's pdf."""
    count, samples = 64, 512
    generator = torch.Generator().manual_seed(0)
    normal = _up(count)
    view = torch.nn.functional.normalize(torch.tensor([[0.3, 0.0, 1.0]]).expand(count, 3), dim=-1)
    roughness = torch.full((count, 1), 0.6)
    dirs, pdf = sample_lights_toward_specular(normal, view, roughness, samples, generator)
    albedo = torch.full((count, 3), 0.8)
    diffuse_only = shade(albedo, roughness, torch.zeros(count, 1), normal, view, dirs, torch.ones(1, 1),
                         light_weights=1.0 / (pdf * samples)) - shade(
        albedo, roughness, torch.zeros(count, 1), normal, view, dirs, torch.ones(1, 1),
        light_weights=1.0 / (pdf * samples), diffuse=False)
    assert abs(float(diffuse_only.mean()) - 0.8) < 0.03


def test_sampler_pdf_is_consistent() -> None:
    """Σ cos⁺ / (pdf n) estimates ∫ cos dω = π for any roughness."""
    generator = torch.Generator().manual_seed(1)
    for rough in (0.1, 0.5, 1.0):
        count, samples = 32, 2048
        view = torch.nn.functional.normalize(torch.tensor([[0.5, 0.2, 1.0]]).expand(count, 3), dim=-1)
        dirs, pdf = sample_lights_toward_specular(_up(count), view, torch.full((count, 1), rough), samples, generator)
        cos = dirs[..., 2].clamp_min(0.0)
        estimate = float((cos / pdf).mean())
        assert abs(estimate - math.pi) / math.pi < 0.05, (rough, estimate)


def test_low_roughness_samples_cluster_around_the_mirror_direction() -> None:
    generator = torch.Generator().manual_seed(2)
    view = torch.nn.functional.normalize(torch.tensor([[0.6, 0.0, 0.8]]), dim=-1)
    mirror = torch.tensor([-0.6, 0.0, 0.8])
    dirs, _ = sample_lights_toward_specular(_up(1), view, torch.full((1, 1), 0.1), 64, generator,
                                            uniform_fraction=0.25)
    ggx_part = dirs[0, :48]
    assert float((ggx_part @ mirror).mean()) > 0.97
    uniform_part = dirs[0, 48:]
    assert float((uniform_part @ mirror).mean()) < 0.9


def test_specular_peaks_at_the_mirror_direction_and_is_differentiable() -> None:
    normal = _up(1)
    view = torch.nn.functional.normalize(torch.tensor([[0.5, 0.0, 1.0]]), dim=-1)
    albedo = torch.full((1, 3), 0.5, requires_grad=True)
    roughness = torch.full((1, 1), 0.3, requires_grad=True)
    metallic = torch.full((1, 1), 0.2, requires_grad=True)
    mirror = torch.tensor([[-0.5, 0.0, 1.0]]) / math.sqrt(1.25)
    off = torch.nn.functional.normalize(torch.tensor([[0.5, 0.0, 1.0]]), dim=-1)
    at_mirror = shade(albedo, roughness, metallic, normal, view, mirror, torch.ones(1, 1), diffuse=False)
    off_mirror = shade(albedo, roughness, metallic, normal, view, off, torch.ones(1, 1), diffuse=False)
    assert float(at_mirror.detach().mean()) > 3 * float(off_mirror.detach().mean())
    (at_mirror.sum() + shade(albedo, roughness, metallic, normal, view, off, torch.ones(1, 1)).sum()).backward()
    for tensor in (albedo, roughness, metallic):
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())
        assert float(tensor.grad.abs().sum()) > 0


def test_light_below_the_horizon_contributes_nothing() -> None:
    below = torch.tensor([[0.0, 0.6, -0.8]])
    out = shade(torch.ones(1, 3), torch.full((1, 1), 0.5), torch.zeros(1, 1), _up(1), _up(1), below,
                torch.ones(1, 1))
    assert float(out.abs().max()) == 0.0
