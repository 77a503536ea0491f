"""Anchored super-resolution of a texture atlas by cascaded SDS (DESIGN.md §4).

The high-resolution atlas `x = g(θ)` (a `PyramidTexture` at `factor ×` the
input size, initialised from the bilinear upsampling of the input) is
optimised with `0.5 w(t) ||x - sg(x̂_0)||²` where `x̂_0` comes from a
super-resolution prior conditioned on the frozen anchor
`x_cond = up(down(g(θ0)))` with noise augmentation. The work happens in UV
space on random crops of the atlas (the atlas is finer than the views).

`ClosedFormSuperResPrior`: the exact denoiser of the empirical distribution of
(high, low) patch pairs cut from the references at two scales (low =
`up(down(ref, factor))`): the posterior weight of pair i is
`softmax_i(-||q - a p_i^high||² / 2s² - ||c - p_i^low||² / 2σ_c²)` with
`σ_c² = noise_level² + cond_floor²` (the augmentation noise plus a floor for
the mismatch between the anchor and the reference), and `x̂_0` averages the
high parts. Implemented by scaling the low half of a joint patch so one
matmul gives the joint distance.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nodes.components.priors import SUPERRES_PRIORS, PriorBatch, SuperResPrior, SuperResPriorConfig
from nodes.measures.distances import superres_report
from nodes.render.uv_raster import fill_atlas_gutter, uv_island_mask
from nodes.types import Instance, Scene

from .closed_form import (
    PatchBank,
    PixelSpaceCosine,
    denoise_image,
    extract_patches,
    subsample_rows,
    with_flips,
)
from .loop import AveragedAdam
from .methods import mask_like, sds_weight
from .schedule import StepSettings, timestep
from .texture_param import PyramidTexture


def anchor_of(image: torch.Tensor, factor: int) -> torch.Tensor:
    """`up(down(image))` `[C, H, W]`: area down by `factor`, bilinear back up."""
    size = image.shape[-2:]
    low = F.interpolate(image[None], scale_factor=1.0 / factor, mode="area")
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0]


class ClosedFormSuperResPrior(PixelSpaceCosine, SuperResPrior):
    """Conditional patch denoiser over (high, low) reference patch pairs, in [-1, 1] pixel space."""

    name = "closed_form"

    def __init__(self, references: Sequence[torch.Tensor], factor: int, *, patch_size: int = 5,
                 bank_size: int = 2048, stride: int = 2, cond_floor: float = 0.1, chunk: int = 2048,
                 generator: torch.Generator | None = None) -> None:
        self.patch_size, self.stride, self.factor = patch_size, stride, factor
        self.cond_floor, self.chunk = cond_floor, chunk
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        pairs = []
        for ref in references:
            for variant in with_flips(self.encode(ref[None].float())[0]):
                joint = torch.cat([variant, anchor_of(variant, factor)])[None]  # [1, 6, h, w]
                if min(joint.shape[-2:]) >= patch_size:
                    pairs.append(extract_patches(joint, patch_size, 1)[0])
        if not pairs:
            raise ValueError(f"reference images smaller than the patch size {patch_size}")
        joint_patches = subsample_rows(torch.cat(pairs), bank_size, self.generator)
        half = 3 * patch_size * patch_size
        self.high = joint_patches[:, :half].contiguous()
        self.low = joint_patches[:, half:].contiguous()

    @torch.no_grad()
    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, noise_level: float,
                   batch: PriorBatch) -> torch.Tensor:
        a_all, s_all = self.noise_coeffs(t)
        # Condition in prior space, noise-augmented (deterministic for the prior's generator).
        cond = self.encode(cond)
        if noise_level > 0:
            cond = cond + noise_level * torch.randn(cond.shape, generator=self.generator)
        sigma_c = math.sqrt(noise_level**2 + self.cond_floor**2)
        out = torch.empty_like(x_t)
        for b in range(x_t.shape[0]):
            a, s = float(a_all[b]), float(s_all[b])
            # ||q - a p_h||²/2s² + ||c - p_l||²/2σ² = ||[q, k c] - a [p_h, (k/a) p_l]||² / 2s², k = s/σ
            k = s / sigma_c
            bank = PatchBank.from_patches(torch.cat([self.high, self.low * (k / a)], 1), self.patch_size)
            joint = torch.cat([x_t[b], k * cond[b]])
            offset = tuple(int(v) for v in torch.randint(0, self.stride, (2,), generator=self.generator))
            x0, _ = denoise_image(joint, batch.masks[b, 0] > 0.5, bank, a, s, self.stride, offset, self.chunk,
                                  values=self.high)
            out[b] = x0
        return out


@dataclass(frozen=True, kw_only=True)
class SuperResSettings(StepSettings):
    """The super-resolution loop's settings: `SuperResSettings.from_params(SuperResParams)` (defaults live there)."""

    factor: int
    noise_level: float
    crop: int
    crops_per_step: int
    texture_levels: int = 3  # levels of the high-resolution atlas's pyramid (no Params knob)


def _random_crops(mask: torch.Tensor, crop: int, count: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """Top-left corners of crops centred on random masked texels."""
    h, w = mask.shape
    texels = torch.nonzero(mask)
    corners = []
    for _ in range(count):
        y, x = texels[int(torch.randint(0, texels.shape[0], (1,), generator=generator))].tolist()
        corners.append((min(max(0, y - crop // 2), h - crop), min(max(0, x - crop // 2), w - crop)))
    return corners


def anchored_superres(
    prior: SuperResPrior,
    image: torch.Tensor,
    mask: torch.Tensor,
    settings: SuperResSettings,
    generator: torch.Generator,
    on_step: Callable[[int, float], None] | None = None,
    poison_at: int | None = None,
    lr: float | None = None,
    start: torch.Tensor | None = None,
    out_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Optimise the ×factor atlas; returns (image `[3, fH, fW]`, mask `[fH, fW]`, losses).

    `start` (optional, `[3, fH, fW]`): where the optimisation begins instead of the upsampled input.
    `out_mask` (optional, `[fH, fW]`): the output atlas's coverage (`output_coverage`), returned as its
    mask; the SDS crops and loss stay on the input's texels at the output size (`mask` upsampled), where
    the anchor holds data.

    Raises `nodes.distill.loop.NonFiniteError` on NaN/inf (`AveragedAdam.step`).
    """

    f = settings.factor
    size = image.shape[-1] * f
    hi_mask = output_coverage(mask, f, None, None)  # the input's texels at the output size
    if start is None:
        start = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", align_corners=False)[0]
    texture = PyramidTexture(size, settings.texture_levels, init=start)
    with torch.no_grad():
        anchor = anchor_of(texture.image(), f)  # x_cond = up(down(g(θ0))), frozen
    crop = min(settings.crop, size)
    # Same noise control as the distillation loop (Polyak average of the parameters), constant lr.
    optimizer = AveragedAdam(texture, lr or settings.lr, settings.ema_decay)
    losses: list[float] = []
    region = hi_mask if bool(hi_mask.any()) else torch.ones_like(hi_mask)
    for step in range(settings.steps):
        t = timestep(settings.schedule, step, settings.steps, settings.t_min, settings.t_max, generator)
        corners = _random_crops(region, crop, settings.crops_per_step, generator)
        loss = _crops_loss(prior, texture.image(), anchor, hi_mask, corners, crop, float(t), settings, generator,
                           poison=poison_at is not None and step == poison_at)
        losses.append(optimizer.step(step, loss))
        if on_step is not None:
            on_step(step, losses[-1])
    optimizer.finish()
    with torch.no_grad():
        out = texture.image().clamp(0, 1)
    return out, (hi_mask if out_mask is None else out_mask.to(torch.bool)), losses


def _crops_loss(prior: SuperResPrior, full: torch.Tensor, anchor: torch.Tensor, hi_mask: torch.Tensor,
                corners: list[tuple[int, int]], crop: int, t: float, settings: SuperResSettings,
                generator: torch.Generator, poison: bool = False) -> torch.Tensor:
    """The anchored SDS loss of one step on the atlas `full`'s crops at `corners` (`poison`: x̂_0 made NaN,
    the tests' way to exercise the restart)."""

    crops = torch.stack([full[:, y:y + crop, x:x + crop] for y, x in corners])
    conds = torch.stack([anchor[:, y:y + crop, x:x + crop] for y, x in corners])
    masks = torch.stack([hi_mask[y:y + crop, x:x + crop] for y, x in corners])[:, None].float()
    x = prior.encode(crops)
    tt = torch.full((x.shape[0],), t)
    a, s = prior.noise_coeffs(tt)
    with torch.no_grad():
        x_t = a * x + s * torch.randn(x.shape, generator=generator)
        x0 = prior.predict_x0(x_t, tt, conds, settings.noise_level, PriorBatch(instance="", masks=masks))
        if poison:
            x0 = x0 * float("nan")
    w = sds_weight(a)
    m = mask_like(masks, x)
    return 0.5 * (w * (x - x0.detach()) ** 2 * m).sum() / m[:, :1].sum().clamp_min(1.0)


def output_coverage(mask: torch.Tensor, factor: int, scene: Scene | None, instance: Instance | None) -> torch.Tensor:
    """The ×factor atlas's mask: the instance's UV coverage at the output size (`uv_island_mask`, the one
    coverage rule); without the scene, the input's `mask` upsampled (nearest), the best guess left."""
    size = (int(mask.shape[0]) * factor, int(mask.shape[1]) * factor)
    if scene is None or instance is None:
        return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5

    return uv_island_mask(scene.uvs, scene.faces[instance.face_mask], size)


def upsampled_map(value: torch.Tensor | None, factor: int, out_mask: torch.Tensor) -> torch.Tensor | None:
    """A material map laid by texture.project (`[1, H, W]` height or roughness) on the upscaled atlas:
    bilinear, its gutter refilled from `out_mask` by the atlas's one gutter rule. None stays None."""

    if value is None:
        return None
    up = F.interpolate(value.float()[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]
    return fill_atlas_gutter(up, out_mask.bool()).contiguous() if bool(out_mask.any()) else up.contiguous()


def superres_info(out: torch.Tensor, image: torch.Tensor, out_mask: torch.Tensor, mask: torch.Tensor,
                  reference: torch.Tensor, factor: int) -> dict[str, Any]:
    return superres_report(out, image, out_mask, mask, reference, factor)


@SUPERRES_PRIORS.register("closed_form")
def closed_form_superres_prior(config: SuperResPriorConfig) -> ClosedFormSuperResPrior:
    """The conditional patch prior over (high, low) pairs of the config's exemplars."""
    return ClosedFormSuperResPrior(list(config.images), config.factor, patch_size=config.patch_size,
                                   bank_size=config.bank_size, stride=config.stride,
                                   generator=torch.Generator().manual_seed(config.seed))
