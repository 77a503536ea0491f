"""Realiz3D training of domain shifters (stage 1) and of the control pathway (stage 2).

Plain functions over a diffusers UNet, a noise scheduler and pre-encoded
latents, testable without the engine (`nodes/sd/nodes.py` wraps them as
`train.domain_shifter` and `train.control`).

- Stage 1 (`train_domain_shifter`): the backbone is frozen; only the
  shifter (domain embeddings + per-block low-rank maps) learns, with the
  standard ε-prediction loss, on real and synthetic images, control null.
- Stage 2 (`train_control`): backbone and shifter frozen; the control
  pathway (`ControlPathway`: a small geometry encoder added to `conv_in`'s
  output + a peft LoRA on the attention projections) learns on synthetic
  renders with their depth/normal geometry. Real images, with null control,
  update only the LoRA of blocks at or after a random cutoff k (the earlier
  blocks' LoRA is frozen for that pass), and with probability p the blocks
  before k run in synthetic mode (domain reassignment).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from graphflow import UserError
from nodes.types import DomainSchedule

from .domain_shifter import REAL, SYNTHETIC, DomainShifter

CONTROL_ADAPTER_NAME = "domain_control"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
GEOMETRY_CHANNELS = 4  # depth (1) + normal (3)

ProgressFn = Callable[[int, float], None]  # (step, loss)


# ---------------------------------------------------------------- data


def prepare_images(images: Sequence[torch.Tensor], resolution: int, crops_per_image: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Random square crops (short side resized to `resolution`, random h-flip) -> `[N, 3, res, res]` in [0, 1].

    Images are linear RGB (the port convention); crops are converted to sRGB,
    the space Stable Diffusion's VAE was trained on.
    """
    crops: list[torch.Tensor] = []
    for image in images:
        image = image.float().clamp(0, 1)
        _, height, width = image.shape
        scale = resolution / min(height, width)
        new_h, new_w = max(resolution, round(height * scale)), max(resolution, round(width * scale))
        resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", antialias=True,
                                align_corners=False)[0]
        for _ in range(crops_per_image):
            top = int(torch.randint(0, new_h - resolution + 1, (1,), generator=generator))
            left = int(torch.randint(0, new_w - resolution + 1, (1,), generator=generator))
            crop = resized[:, top:top + resolution, left:left + resolution]
            if bool(torch.rand((), generator=generator) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
    return kornia.color.linear_rgb_to_rgb(torch.stack(crops)).clamp(0, 1)


def geometry_from_views(depth: torch.Tensor, normal: torch.Tensor, resolution: int) -> torch.Tensor:
    """Views' depth `[B, H, W]` and normals `[B, H, W, 3]` (nvdiffrast rows, bottom first) -> `[B, 4, res, res]`.

    Depth is normalised per view to (0, 1] on covered pixels (0 empty), normals
    mapped to [0, 1]; rows are flipped to image order (top first).
    """
    depth = depth.float().flip(1)
    normal = normal.float().flip(1)
    far = depth.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1)
    geometry = torch.cat([(depth / far)[:, None], normal.permute(0, 3, 1, 2) * 0.5 + 0.5], dim=1)
    geometry = geometry * (depth > 0)[:, None].float()
    return F.interpolate(geometry, size=(resolution, resolution), mode="bilinear", antialias=True,
                         align_corners=False)


def sample_rows(count: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, count, (batch,), generator=generator)


# ---------------------------------------------------------------- loss


def diffusion_loss(unet: nn.Module, scheduler: Any, latents: torch.Tensor, context: torch.Tensor,
                   generator: torch.Generator, timesteps: torch.Tensor | None = None) -> torch.Tensor:
    """The standard denoising loss (ε or v target, per the scheduler's `prediction_type`)."""
    batch = latents.shape[0]
    num_train = int(scheduler.config.num_train_timesteps)
    if timesteps is None:
        timesteps = torch.randint(0, num_train, (batch,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = unet(noisy, timesteps.to(latents.device), encoder_hidden_states=context.expand(batch, -1, -1)).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


@torch.no_grad()
def evaluation_loss(unet: nn.Module, scheduler: Any, latents: torch.Tensor, context: torch.Tensor,
                    seed: int = 1234, repeats: int = 4) -> float:
    """Diffusion loss with fixed noise and timesteps (comparable before/after training)."""
    gen = torch.Generator().manual_seed(seed)
    num_train = int(scheduler.config.num_train_timesteps)
    total = 0.0
    for _ in range(repeats):
        t = torch.randint(0, num_train, (latents.shape[0],), generator=gen)
        total += float(diffusion_loss(unet, scheduler, latents, context, gen, t))
    return total / repeats


# ---------------------------------------------------------------- stage 1


def train_domain_shifter(
    unet: nn.Module, scheduler: Any, real: torch.Tensor, synthetic: torch.Tensor, context: torch.Tensor, *,
    rank: int = 4, embed_dim: int = 64, steps: int = 200, lr: float = 1e-3, batch_size: int = 4,
    generator: torch.Generator, shifter: DomainShifter | None = None, progress: ProgressFn | None = None,
) -> tuple[DomainShifter, list[float]]:
    """Stage 1: train a shifter on real + synthetic latents with the backbone frozen.

    `real`/`synthetic`: `[N, C, h, w]` latents; `context`: `[1, L, D]` null
    conditioning. Each step takes half the batch from each domain.
    Returns the (attached) shifter and the loss per step.
    """
    shifter = shifter or DomainShifter.for_unet(unet, rank=rank, embed_dim=embed_dim, generator=generator)
    param = next(unet.parameters())
    shifter.to(device=param.device, dtype=param.dtype)
    shifter.attach(unet)
    shifter.requires_grad_(True)
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    unet.requires_grad_(False)
    optimizer = torch.optim.AdamW(shifter.parameters(), lr=lr, weight_decay=0.0)
    half = max(1, batch_size // 2)
    losses: list[float] = []
    try:
        for step in range(steps):
            real_rows = sample_rows(real.shape[0], half, generator)
            synth_rows = sample_rows(synthetic.shape[0], max(1, batch_size - half), generator)
            latents = torch.cat([real[real_rows], synthetic[synth_rows]])
            domains = torch.cat([torch.full((len(real_rows),), REAL), torch.full((len(synth_rows),), SYNTHETIC)])
            shifter.set_domain(domains)
            loss = diffusion_loss(unet, scheduler, latents, context, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
    finally:
        for n, p in unet.named_parameters():
            p.requires_grad_(flags[n])
        shifter.set_domain("real")
        shifter.requires_grad_(False)
    return shifter, losses


# ---------------------------------------------------------------- stage 2: control pathway


class GeometryEncoder(nn.Module):
    """Depth/normal image -> a residual on `conv_in`'s output (ControlNet's conditioning embedding, zero-init out)."""

    def __init__(self, out_channels: int, downscale: int, hidden: int = 16,
                 geometry_channels: int = GEOMETRY_CHANNELS, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if downscale < 1 or downscale & (downscale - 1):
            raise ValueError(f"downscale must be a power of two, got {downscale}")
        layers: list[nn.Module] = [nn.Conv2d(geometry_channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(downscale))):
            layers += [nn.Conv2d(hidden, hidden, 3, padding=1, stride=2), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, out_channels, 1)
        self.downscale = downscale
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        with torch.no_grad():
            for conv in self.body:
                if isinstance(conv, nn.Conv2d):
                    fan_in = conv.weight[0].numel()
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in**0.5)
                    conv.bias.zero_()
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, geometry: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(geometry))


class ControlPathway:
    """The stage-2 control pathway on a UNet: a geometry encoder hooked onto `conv_in` + a peft LoRA.

    `set_geometry(None)` is the null control (the encoder adds nothing).
    """

    def __init__(self, unet: nn.Module, rank: int, downscale: int, generator: torch.Generator,
                 encoder: GeometryEncoder | None = None) -> None:
        from peft import LoraConfig

        self.unet = unet
        self.rank = rank
        out_channels = int(unet.conv_in.out_channels)
        self.encoder = encoder or GeometryEncoder(out_channels, downscale, generator=generator)
        param = next(unet.parameters())
        self.encoder.to(device=param.device, dtype=param.dtype)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS),
                                    init_lora_weights=True), adapter_name=CONTROL_ADAPTER_NAME)
        with torch.no_grad():  # peft initialises A from the global RNG: re-draw it from ours (determinism)
            for name, p in self.lora_parameters().items():
                if ".lora_A." in name:
                    p.copy_(torch.randn(p.shape, generator=generator) / p.shape[1] ** 0.5)
        self.geometry: torch.Tensor | None = None
        self._handle = unet.conv_in.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.geometry is None:
            return output
        residual = self.encoder(self.geometry.to(output))
        if residual.shape[0] != output.shape[0]:
            residual = residual.repeat(output.shape[0] // residual.shape[0], 1, 1, 1)
        return output + residual

    def set_geometry(self, geometry: torch.Tensor | None) -> None:
        self.geometry = geometry

    def lora_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.unet.named_parameters() if f".{CONTROL_ADAPTER_NAME}." in n and "lora_" in n}

    def parameters(self) -> list[nn.Parameter]:
        return list(self.lora_parameters().values()) + list(self.encoder.parameters())

    def state(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        lora = get_peft_model_state_dict(self.unet, adapter_name=CONTROL_ADAPTER_NAME)
        out = {f"lora.{k}": v.detach().clone().cpu() for k, v in lora.items()}
        out |= {f"encoder.{k}": v.detach().clone().cpu() for k, v in self.encoder.state_dict().items()}
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft.utils import set_peft_model_state_dict

        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        set_peft_model_state_dict(self.unet, lora, adapter_name=CONTROL_ADAPTER_NAME)
        self.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})

    def remove(self) -> None:
        self._handle.remove()
        self.unet.delete_adapters(CONTROL_ADAPTER_NAME)


def lora_parameters_by_block(pathway: ControlPathway, shifter: DomainShifter) -> list[list[nn.Parameter]]:
    """The LoRA parameters living in each transformer block (execution order)."""
    params = pathway.lora_parameters()
    return [[p for n, p in params.items() if n.startswith(block + ".")] for block in shifter.block_names]


def real_sample_backward(
    unet: nn.Module, scheduler: Any, shifter: DomainShifter, pathway: ControlPathway, latents: torch.Tensor,
    context: torch.Tensor, *, cutoff: int, reassign: bool, generator: torch.Generator,
) -> float:
    """Backward of the loss of real samples: null control, LoRA of blocks < `cutoff` frozen for this pass.

    With `reassign`, blocks < `cutoff` run in synthetic mode (domain reassignment).
    """
    frozen = [p for block in lora_parameters_by_block(pathway, shifter)[:cutoff] for p in block]
    frozen += list(pathway.encoder.parameters())  # control is null for real images
    flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    pathway.set_geometry(None)
    shifter.set_domain("real")
    if reassign:
        shifter.set_block_domains({i: "synthetic" for i in range(cutoff)})
    try:
        loss = diffusion_loss(unet, scheduler, latents, context, generator)
        if loss.requires_grad:  # a cutoff past the last trained block leaves nothing to update
            loss.backward()
    finally:
        for p, flag in zip(frozen, flags, strict=True):
            p.requires_grad_(flag)
        shifter.clear_overrides()
    return float(loss.detach())


def synthetic_sample_backward(
    unet: nn.Module, scheduler: Any, shifter: DomainShifter, pathway: ControlPathway, latents: torch.Tensor,
    geometry: torch.Tensor, context: torch.Tensor, *, generator: torch.Generator,
) -> float:
    """Backward of the loss of synthetic renders with their geometry as control, synthetic mode."""
    pathway.set_geometry(geometry)
    shifter.set_domain("synthetic")
    try:
        loss = diffusion_loss(unet, scheduler, latents, context, generator)
        loss.backward()
    finally:
        pathway.set_geometry(None)
        shifter.set_domain("real")
    return float(loss.detach())


@dataclass
class ControlTrainingResult:
    pathway: ControlPathway
    synthetic_losses: list[float]
    real_losses: list[float]
    cutoffs: list[int]


def train_control(
    unet: nn.Module, scheduler: Any, shifter: DomainShifter, synthetic: torch.Tensor, geometry: torch.Tensor,
    real: torch.Tensor | None, context: torch.Tensor, *, rank: int = 4, steps: int = 200, lr: float = 1e-3,
    batch_size: int = 4, reassign_prob: float = 0.5, downscale: int = 1, generator: torch.Generator,
    progress: ProgressFn | None = None,
) -> ControlTrainingResult:
    """Stage 2: train the control pathway with the backbone and the (attached) shifter frozen.

    `synthetic` latents `[N, C, h, w]` with `geometry` `[N, 4, H, W]` (H = h * downscale);
    `real` latents (or None). Each step: one synthetic batch with control and,
    when real data is given, one real batch with null control, a random cutoff
    k in [0, blocks) and domain reassignment with probability `reassign_prob`.
    """
    if not shifter.attached:
        shifter.attach(unet)
    shifter.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    unet.requires_grad_(False)
    pathway = ControlPathway(unet, rank, downscale, generator)
    for p in pathway.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(pathway.parameters(), lr=lr, weight_decay=0.0)
    result = ControlTrainingResult(pathway, [], [], [])
    try:
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            rows = sample_rows(synthetic.shape[0], batch_size, generator)
            result.synthetic_losses.append(synthetic_sample_backward(
                unet, scheduler, shifter, pathway, synthetic[rows], geometry[rows], context, generator=generator))
            if real is not None and real.shape[0]:
                # k in [0, blocks): the last block always learns from real images
                cutoff = int(torch.randint(0, shifter.num_blocks, (1,), generator=generator))
                reassign = bool(torch.rand((), generator=generator) < reassign_prob)
                rows = sample_rows(real.shape[0], batch_size, generator)
                result.real_losses.append(real_sample_backward(
                    unet, scheduler, shifter, pathway, real[rows], context, cutoff=cutoff, reassign=reassign,
                    generator=generator))
                result.cutoffs.append(cutoff)
            optimizer.step()
            if progress is not None:
                progress(step, result.synthetic_losses[-1])
    finally:
        for n, p in unet.named_parameters():
            if n in flags:
                p.requires_grad_(flags[n])
    return result


def load_control(unet: nn.Module, adapter: Any) -> ControlPathway:
    """Install a trained adapter's control pathway on `unet` (frozen); `pathway.set_geometry(g)` then conditions
    every call on `g` `[B, 4, H, W]` (see `geometry_from_views`), `pathway.remove()` uninstalls it."""
    info = adapter.meta.get("control")
    if not info or not adapter.control:
        raise UserError("the domain adapter has no control pathway", param="adapter",
                        hint="train it with train.control (stage 2)")
    pathway = ControlPathway(unet, int(info["rank"]), int(info["downscale"]), torch.Generator().manual_seed(0))
    pathway.load_state(adapter.control)
    for p in pathway.parameters():
        p.requires_grad_(False)
    return pathway


def default_schedule(num_blocks: int, fraction: float = 1 / 3, t_min: float = 0.6) -> DomainSchedule:
    """Untuned default: the first third of the blocks (encoder side) synthetic at high noise."""
    count = max(1, round(num_blocks * fraction))
    return DomainSchedule(tuple(range(count)), t_min)


__all__ = [
    "CONTROL_ADAPTER_NAME", "ControlPathway", "ControlTrainingResult", "GeometryEncoder", "default_schedule",
    "diffusion_loss", "evaluation_loss", "geometry_from_views", "load_control", "lora_parameters_by_block",
    "prepare_images",
    "real_sample_backward", "synthetic_sample_backward", "train_control", "train_domain_shifter",
]
