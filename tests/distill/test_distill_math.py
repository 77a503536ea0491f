"""Distillation math on small tensors: gradients, MGDA, the closed-form denoiser, schedules."""
from __future__ import annotations

import math

import pytest
import torch

from nodes.components.priors import EpsMode, PriorBatch, ScorePrior
from nodes.distill.closed_form import (
    ClosedFormPrior,
    PatchBank,
    cosine_noise_coeffs,
    denoise_image,
    denoise_queries,
    extract_patches,
)
from nodes.distill.methods import distill_gradient, guided_eps, mgda_weight, sds_weight, surrogate_loss
from nodes.distill.schedule import timestep


class AnalyticPrior(ScorePrior):
    """A hand-computable prior: ε_c = x_t * 0.5, ε_u = x_t * 0.25, ε_φ = x_t * 0.1 + 0.3 (records calls)."""

    name = "analytic"

    def __init__(self) -> None:
        self.phi_updates = 0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cosine_noise_coeffs(t)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: EpsMode) -> torch.Tensor:
        return x_t * (0.5 if mode == "cond" else 0.25)

    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        return x_t * 0.1 + 0.3

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        self.phi_updates += 1
        return None


def _setup(shape: tuple[int, ...] = (2, 3, 4, 4)) -> tuple[torch.Tensor, PriorBatch]:
    x = torch.linspace(-1, 1, math.prod(shape)).reshape(shape)
    return x, PriorBatch(instance="i", masks=torch.ones(shape[0], 1, *shape[2:]))


def _noise(x: torch.Tensor, t: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, s = cosine_noise_coeffs(torch.full((x.shape[0],), t))
    eps = torch.randn(x.shape, generator=g)
    return a, s, eps, a * x + s * eps


def test_sds_gradient_with_cfg_matches_hand_computation() -> None:
    x, batch = _setup()
    t, scale = 0.6, 3.0
    got = distill_gradient("sds", AnalyticPrior(), x, t, batch, torch.Generator().manual_seed(7), guidance_scale=scale)
    a, s, eps, x_t = _noise(x, t, 7)
    eps_hat = 0.25 * x_t + scale * (0.5 * x_t - 0.25 * x_t)
    expected = (1 - a * a) * (eps_hat - eps)
    torch.testing.assert_close(got.grad, expected)


def test_vsd_gradient_matches_hand_computation() -> None:
    x, batch = _setup()
    prior = AnalyticPrior()
    got = distill_gradient("vsd", prior, x, 0.4, batch, torch.Generator().manual_seed(3))
    a, s, eps, x_t = _noise(x, 0.4, 3)
    torch.testing.assert_close(got.grad, (1 - a * a) * (0.5 * x_t - (0.1 * x_t + 0.3)))
    assert prior.phi_updates == 1


def test_tbsd_combines_structure_and_texture_terms_with_mgda() -> None:
    x, batch = _setup()
    t, t_min, frac, scale = 0.8, 0.02, 0.25, 2.0
    got = distill_gradient("tbsd", AnalyticPrior(), x, t, batch, torch.Generator().manual_seed(5),
                           guidance_scale=scale, t_min=t_min, texture_t_fraction=frac)
    g = torch.Generator().manual_seed(5)
    a1, s1 = cosine_noise_coeffs(torch.full((2,), t))
    e1 = torch.randn(x.shape, generator=g)
    xt1 = a1 * x + s1 * e1
    g1 = (1 - a1**2) * ((0.25 * xt1 + scale * 0.25 * xt1) - (0.1 * xt1 + 0.3))
    t_x = t_min + frac * (t - t_min)
    a2, s2 = cosine_noise_coeffs(torch.full((2,), t_x))
    e2 = torch.randn(x.shape, generator=g)
    xt2 = a2 * x + s2 * e2
    phi2 = 0.1 * xt2 + 0.3
    g2 = (1 - a2**2) * ((phi2 + scale * (0.5 * xt2 - phi2)) - e2)
    lam = mgda_weight(g1, g2)
    torch.testing.assert_close(got.grad, lam * g1 + (1 - lam) * g2)
    assert got.info["lambda"] == pytest.approx(lam)


def test_mgda_weight_is_the_min_norm_point() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        g1, g2 = torch.randn(10, generator=g), torch.randn(10, generator=g) * 2
        lam = mgda_weight(g1, g2)
        grid = torch.linspace(0, 1, 10001)
        norms = (grid[:, None] * g1 + (1 - grid[:, None]) * g2).norm(dim=1)
        assert lam == pytest.approx(float(grid[norms.argmin()]), abs=2e-4)
        formula = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))
        assert lam == pytest.approx(min(1.0, max(0.0, formula)), abs=1e-6)
    # clipping: g1 shorter and aligned -> λ = 1; g2 shorter -> λ = 0
    assert mgda_weight(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])) == 1.0
    assert mgda_weight(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0])) == 0.0


def test_sds_weight_and_guidance() -> None:
    a = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(sds_weight(a), torch.tensor([1.0, 0.75, 0.0]))
    torch.testing.assert_close(guided_eps(torch.tensor(2.0), torch.tensor(1.0), 3.0), torch.tensor(4.0))


def test_surrogate_loss_gradient_is_g() -> None:
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    g = torch.randn(2, 3, 5, 5)
    mask = torch.zeros(2, 3, 5, 5)
    mask[:, :, 1:4, 1:4] = 1
    loss = surrogate_loss(x, g, mask)
    loss.backward()
    torch.testing.assert_close(x.grad, g * mask / mask.sum())
    assert float(loss.detach()) == pytest.approx(float(0.5 * (g**2 * mask).sum() / mask.sum()))


def _brute_force_posterior_mean(q: torch.Tensor, w: torch.Tensor, bank: torch.Tensor, a: float, s: float) -> torch.Tensor:
    d = (((q[:, None, :] - a * bank[None]) ** 2) * w[:, None, :]).sum(-1).double()
    return torch.softmax(-d / (2 * s * s), dim=1).float() @ bank


def test_closed_form_denoiser_equals_brute_force_softmax() -> None:
    g = torch.Generator().manual_seed(1)
    bank = torch.rand(37, 12, generator=g) * 2 - 1
    q = torch.randn(9, 12, generator=g)
    weights = (torch.rand(9, 12, generator=g) > 0.3).float()
    for a, s in ((0.9, 0.3), (0.3, 0.95), (0.99, 0.05)):
        pb = PatchBank.from_patches(bank, 2)
        torch.testing.assert_close(denoise_queries(q, None, pb, a, s), _brute_force_posterior_mean(
            q, torch.ones_like(q), bank, a, s), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(denoise_queries(q, weights, pb, a, s), _brute_force_posterior_mean(
            q, weights, bank, a, s), atol=1e-5, rtol=1e-4)


def test_denoise_image_averages_overlapping_patch_estimates() -> None:
    g = torch.Generator().manual_seed(2)
    p = 3
    bank = PatchBank.from_patches(torch.rand(20, 3 * p * p, generator=g), p)
    x_t = torch.randn(3, 6, 7, generator=g)
    mask = torch.ones(6, 7, dtype=torch.bool)
    a, s = 0.7, 0.7
    x0, covered = denoise_image(x_t, mask, bank, a, s, stride=1)
    assert bool(covered.all())
    # brute force: every patch touching the image (pixels outside it do not count in the distance),
    # its posterior mean summed per pixel, divided by the count
    acc, cnt = torch.zeros(3, 6, 7), torch.zeros(6, 7)
    padded = torch.nn.functional.pad(x_t, (p, p, p, p))
    valid = torch.nn.functional.pad(torch.ones(1, 6, 7), (p, p, p, p))[0]
    acc_p, cnt_p = torch.zeros_like(padded), torch.zeros_like(valid)
    for y in range(padded.shape[1] - p + 1):
        for x in range(padded.shape[2] - p + 1):
            w = valid[y:y + p, x:x + p]
            if float(w.sum()) == 0:
                continue
            q = padded[:, y:y + p, x:x + p].reshape(1, -1)
            est = _brute_force_posterior_mean(q, w.reshape(1, -1).repeat(1, 3), bank.patches, a, s).reshape(3, p, p)
            acc_p[:, y:y + p, x:x + p] += est
            cnt_p[y:y + p, x:x + p] += 1
    acc, cnt = acc_p[:, p:p + 6, p:p + 7], cnt_p[p:p + 6, p:p + 7]
    torch.testing.assert_close(x0, acc / cnt, atol=1e-5, rtol=1e-4)


def test_chunked_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(3)
    bank = PatchBank.from_patches(torch.rand(50, 27, generator=g), 3)
    q = torch.randn(101, 27, generator=g)
    w = (torch.rand(101, 27, generator=g) > 0.5).float()
    torch.testing.assert_close(denoise_queries(q, None, bank, 0.5, 0.8, chunk=7),
                               denoise_queries(q, None, bank, 0.5, 0.8, chunk=1000))
    torch.testing.assert_close(denoise_queries(q, w, bank, 0.5, 0.8, chunk=13),
                               denoise_queries(q, w, bank, 0.5, 0.8, chunk=1000))


def _refs() -> list[torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    return [torch.stack([0.5 + 0.5 * torch.sin(x / 3), (y / 40), 0.3 + 0 * x])]


def test_closed_form_prior_is_deterministic_for_a_seed() -> None:
    def eps(seed: int) -> torch.Tensor:
        prior = ClosedFormPrior(_refs(), bank_size=100, generator=torch.Generator().manual_seed(seed))
        x_t = torch.linspace(-1, 1, 2 * 3 * 24 * 24).reshape(2, 3, 24, 24)
        batch = PriorBatch("i", torch.ones(2, 1, 24, 24))
        return prior.predict_eps(x_t, torch.tensor([0.5, 0.1]), batch, "cond")

    assert torch.equal(eps(4), eps(4))
    assert not torch.equal(eps(4), eps(5))


def test_closed_form_prior_at_low_noise_recovers_a_bank_image() -> None:
    """At a tiny noise level the denoiser returns the nearest bank patches: x̂0 ≈ the clean reference."""
    ref = _refs()[0]
    prior = ClosedFormPrior([ref], levels=1, bank_size=100_000, stride=1)
    x = prior.encode(ref[None, :, 5:29, 5:29])
    t = torch.tensor([0.01])
    a, s = prior.noise_coeffs(t)
    x_t = a * x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x0 = prior.predict_x0(x_t, t, torch.ones(1, 1, 24, 24))
    assert float((x0 - x).abs().max()) < 0.05


def test_timestep_schedules() -> None:
    g = torch.Generator().manual_seed(0)
    ts = [timestep("decreasing", i, 11, 0.02, 0.98, g) for i in range(11)]
    assert ts[0] == pytest.approx(0.98) and ts[-1] == pytest.approx(0.02)
    assert all(x >= y for x, y in zip(ts, ts[1:]))
    assert ts[5] == pytest.approx(0.02 + 0.96 * 0.25)
    anneal = [timestep("anneal", i, 100, 0.02, 0.98, g) for i in range(100)]
    assert max(anneal[50:]) <= 0.5 and max(anneal[:50]) > 0.5
    rnd = [timestep("random", i, 100, 0.1, 0.9, g) for i in range(100)]
    assert 0.1 <= min(rnd) and max(rnd) <= 0.9
    with pytest.raises(ValueError):
        timestep("decreasing", 0, 10, 0.5, 0.2, g)


def test_patch_extraction_layout() -> None:
    img = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    patches = extract_patches(img, 2, 2)
    assert patches.shape == (1, 4, 8)
    torch.testing.assert_close(patches[0, 0], torch.tensor([0.0, 1, 4, 5, 16, 17, 20, 21]))
