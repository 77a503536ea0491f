"""The SD x4 upscaler as a super-resolution prior, on a tiny random pipeline (nothing downloaded)."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never download

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphflow import UserError
from nodes.components.priors import PriorBatch
from nodes.sd.tiny import build_tiny_sd, build_tiny_upscaler
from nodes.sd.upscaler import StableDiffusionUpscalerPrior, load_upscaler_prior

pytest.importorskip("diffusers", reason="the optional `sd` extra (diffusers, transformers, peft) is not installed")
pytest.importorskip("peft", reason="the optional `sd` extra is not installed")

BATCH = PriorBatch(instance="sofa", masks=torch.ones(1, 1, 64, 64))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_upscaler(tmp_path_factory.mktemp("tiny_upscaler"), seed=0)


@pytest.fixture(scope="module")
def prior(tiny_upscaler: Path) -> StableDiffusionUpscalerPrior:
    return load_upscaler_prior(str(tiny_upscaler), "cpu", prompts={"sofa": "green velvet"})


def _noisy(
    prior: StableDiffusionUpscalerPrior, x0: torch.Tensor, t: float, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    tt = torch.full((x0.shape[0],), t)
    a, s = prior.noise_coeffs(tt)
    return tt, a * x0 + s * torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))


def test_shapes(prior: StableDiffusionUpscalerPrior) -> None:
    latents = prior.encode(torch.rand(2, 3, 64, 64))
    assert latents.shape == (2, 4, 16, 16)  # x4 VAE: latents at the low-res condition's size
    assert prior.encode(torch.rand(1, 3, 64, 128)).shape == (1, 4, 16, 32)
    tt, x_t = _noisy(prior, latents, 0.5, 0)
    cond = torch.rand(2, 3, 16, 16)
    x0 = prior.predict_x0(x_t, tt, cond, 0.1, BATCH)
    assert x0.shape == latents.shape and not x0.requires_grad and bool(torch.isfinite(x0).all())
    # A condition of another size is resized to the latent grid; one condition broadcasts over the batch.
    assert prior.predict_x0(x_t, tt, torch.rand(1, 3, 32, 32), 0.0, BATCH).shape == latents.shape
    assert prior.decode(x0).shape == (2, 3, 64, 64)
    assert prior.noise_level_label(0.1) == 35 and prior.noise_level_label(1.0) == 350


def test_condition_and_noise_level_matter(prior: StableDiffusionUpscalerPrior) -> None:
    latents = prior.encode(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    tt, x_t = _noisy(prior, latents, 0.6, 1)
    cond = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    clean = prior.predict_x0(x_t, tt, cond, 0.0, BATCH)
    torch.testing.assert_close(prior.predict_x0(x_t, tt, cond, 0.0, BATCH), clean, rtol=0, atol=0)
    assert float((prior.predict_x0(x_t, tt, 1.0 - cond, 0.0, BATCH) - clean).abs().max()) > 0
    assert float((prior.predict_x0(x_t, tt, cond, 0.3, BATCH) - clean).abs().max()) > 0
    # Near t = 0 the sample is almost clean: x̂_0 stays close to x_t (v-prediction converted correctly).
    tt0, x_t0 = _noisy(prior, latents, 0.0, 3)
    near = prior.predict_x0(x_t0, tt0, cond, 0.0, BATCH)
    assert float((near - x_t0).abs().mean()) < 0.05 * float(x_t0.abs().mean()) + 0.05


def test_noise_augmentation_is_seeded(tiny_upscaler: Path) -> None:
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    cond = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    runs = []
    for _ in range(2):
        prior = load_upscaler_prior(str(tiny_upscaler), "cpu", seed=3)
        tt, x_t = _noisy(prior, latents, 0.4, 6)
        runs.append(prior.predict_x0(x_t, tt, cond, 0.2, BATCH))
    assert torch.equal(runs[0], runs[1])


def test_anchored_sr_gradient_reaches_texture(prior: StableDiffusionUpscalerPrior) -> None:
    generator = torch.Generator().manual_seed(7)
    texture = torch.rand(1, 3, 32, 32, generator=generator).requires_grad_(True)
    render = F.interpolate(texture, size=(64, 64), mode="bilinear", align_corners=False)
    anchor = F.interpolate(render.detach(), size=(16, 16), mode="area")  # x_cond = down(g(θ0)), frozen
    x = prior.encode(render)
    tt, x_t = _noisy(prior, x.detach(), 0.3, 8)
    x0 = prior.predict_x0(x_t, tt, anchor, 0.1, BATCH)
    a, _ = prior.noise_coeffs(tt)
    loss = 0.5 * ((1 - a**2) * (x - x0.detach()) ** 2).sum()  # 0.5 w ||x - sg(x̂_0)||²
    loss.backward()
    assert texture.grad is not None and float(texture.grad.abs().sum()) > 0
    assert bool(torch.isfinite(texture.grad).all())


def test_cfg_against_empty_prompt(tiny_upscaler: Path, prior: StableDiffusionUpscalerPrior) -> None:
    guided = load_upscaler_prior(str(tiny_upscaler), "cpu", prompts={"sofa": "green velvet"}, guidance_scale=4.0)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    tt, x_t = _noisy(prior, latents, 0.5, 10)
    cond = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    difference = guided.predict_x0(x_t, tt, cond, 0.0, BATCH) - prior.predict_x0(x_t, tt, cond, 0.0, BATCH)
    assert float(difference.abs().max()) > 0


def test_missing_or_wrong_weights(tmp_path: Path) -> None:
    missing = tmp_path / "no_upscaler"
    with pytest.raises(UserError) as error:
        load_upscaler_prior(str(missing), "cpu")
    assert str(missing) in str(error.value) and "stable-diffusion-x4-upscaler" in str(error.value)
    # A plain SD pipeline is not an upscaler: its lack of low_res_scheduler/ is named.
    plain = build_tiny_sd(tmp_path / "plain_sd")
    with pytest.raises(UserError, match="low_res_scheduler"):
        load_upscaler_prior(str(plain), "cpu")
