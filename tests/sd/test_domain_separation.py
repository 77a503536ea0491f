"""Slow end-to-end check of Realiz3D stage 1 on CPU: domain shifters separate two visually distinct image sets.

A tiny pixel-space UNet is first pre-trained (all weights) on the union of two
sets, playing the role of the pretrained Stable Diffusion backbone:
"synthetic" = bright smooth two-colour gradients (flat-shaded renders),
"real" = darker noisy textures (photographs). Then the backbone is frozen and only
the domain shifters are trained (stage 1). Samples drawn in real mode must be
closer (patch sliced-Wasserstein, `nodes.measures.distances`) to held-out real
images than samples drawn in synthetic mode, and vice versa.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel  # noqa: E402

from nodes.measures.distances import patch_sliced_wasserstein  # noqa: E402
from nodes.sd.domain_shifter import DomainShifter  # noqa: E402
from nodes.sd.training import diffusion_loss, evaluation_loss, train_domain_shifter  # noqa: E402

SIZE = 8
CROSS_DIM = 16
PRETRAIN_STEPS = 600
SHIFTER_STEPS = 600


def image_sets(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, synthetic) images `[count, 3, SIZE, SIZE]` in [-1, 1]."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    angle = torch.rand(count, generator=generator) * 2 * math.pi
    ramp = (torch.cos(angle)[:, None, None] * xs + torch.sin(angle)[:, None, None] * ys) * 0.5 + 0.5
    # synthetic: bright flat-shaded gradients; real: darker noisy textures
    start = torch.rand(count, 3, 1, 1, generator=generator) * 0.45 + 0.55
    end = torch.rand(count, 3, 1, 1, generator=generator) * 0.45 + 0.55
    synthetic = start + (end - start) * ramp[:, None]
    base = torch.rand(count, 3, 1, 1, generator=generator) * 0.3 + 0.15
    real = (base + 0.2 * torch.randn(count, 3, SIZE, SIZE, generator=generator)).clamp(0, 1)
    return real * 2 - 1, synthetic * 2 - 1


@torch.no_grad()
def sample(unet: UNet2DConditionModel, scheduler: DDPMScheduler, shifter: DomainShifter, domain: str,
           count: int = 192, steps: int = 20) -> torch.Tensor:
    shifter.set_domain(domain)
    ddim = DDIMScheduler.from_config(scheduler.config, clip_sample=True)  # x0 clipping: pixel-space model
    ddim.set_timesteps(steps)
    x = torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))  # same noise for both modes
    context = torch.zeros(count, 1, CROSS_DIM)
    for t in ddim.timesteps:
        x = ddim.step(unet(x, t.expand(count), encoder_hidden_states=context).sample, t, x).prev_sample
    return x.clamp(-1, 1)


def distance(samples: torch.Tensor, images: torch.Tensor) -> float:
    to_unit = lambda x: (x + 1) / 2  # noqa: E731
    return patch_sliced_wasserstein(to_unit(samples), None, list(to_unit(images)), patch_size=3, levels=2)


@pytest.mark.slow
def test_shifters_separate_real_and_synthetic_samples() -> None:
    torch.set_num_threads(1)  # the numbers below are reproducible for a fixed thread count
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    real, synthetic = image_sets(64, gen)
    torch.manual_seed(0)  # diffusers initialises from the global RNG
    unet = UNet2DConditionModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_DIM, attention_head_dim=8, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    context = torch.zeros(1, 1, CROSS_DIM)
    # "pretrained backbone": all weights, both sets, no domain information
    optimizer = torch.optim.AdamW(unet.parameters(), lr=3e-3)
    both = torch.cat([real, synthetic])
    for _ in range(PRETRAIN_STEPS):
        loss = diffusion_loss(unet, scheduler, both[torch.randint(0, len(both), (16,), generator=gen)], context, gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unet.requires_grad_(False)
    backbone = {k: v.clone() for k, v in unet.state_dict().items()}
    # stage 1: shifters only
    shifter, _ = train_domain_shifter(unet, scheduler, real, synthetic, context, rank=8, embed_dim=16,
                                      steps=SHIFTER_STEPS, lr=6e-2, batch_size=16, generator=gen)
    assert all(torch.equal(v, backbone[k]) for k, v in unet.state_dict().items())
    losses = {}
    for label in ("real", "synthetic"):
        shifter.set_domain(label)
        losses[label] = (evaluation_loss(unet, scheduler, real, context),
                         evaluation_loss(unet, scheduler, synthetic, context))
    real_mode, synthetic_mode = sample(unet, scheduler, shifter, "real"), sample(unet, scheduler, shifter, "synthetic")
    held_real, held_synthetic = image_sets(192, torch.Generator().manual_seed(99))
    table = {
        ("real mode", "real set"): distance(real_mode, held_real),
        ("real mode", "synthetic set"): distance(real_mode, held_synthetic),
        ("synthetic mode", "real set"): distance(synthetic_mode, held_real),
        ("synthetic mode", "synthetic set"): distance(synthetic_mode, held_synthetic),
    }
    print(f"\nstage-1 loss with real label (real data, synthetic data): {losses['real']}")
    print(f"stage-1 loss with synthetic label (real data, synthetic data): {losses['synthetic']}")
    for (mode, target), value in table.items():
        print(f"patch SWD  {mode:>14} -> {target:<13} {value:.4f}")
    print(f"seconds: {time.perf_counter() - start:.1f}")
    assert losses["real"][0] < losses["synthetic"][0] and losses["synthetic"][1] < losses["real"][1]
    assert table[("real mode", "real set")] < table[("synthetic mode", "real set")]
    assert table[("synthetic mode", "synthetic set")] < table[("real mode", "synthetic set")]
