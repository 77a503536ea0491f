"""Score distillation gradients, written once against `ScorePrior` (DESIGN.md §4).

Every method returns the per-element gradient `g` on the prior-space sample
`x = encode(render(θ))`; the optimiser then minimises the surrogate
`0.5 ||x - sg(x - g)||²` (masked and averaged over the instance's pixels), whose
gradient w.r.t. x is exactly `g`, so `∂/∂θ` flows through encode and the
renderer by autograd.

- SDS: `g = w(t) (ε̂(x_t) - ε)`, `w(t) = 1 - ᾱ_t = 1 - a_t²`, with classifier-free
  guidance `ε̂ = ε_u + s (ε_c - ε_u)` (s = 1 skips the unconditional call).
- VSD: `g = w(t) (ε̂(x_t) - ε_φ(x_t))`, ε_φ the score of the current renders
  (the prior's `predict_eps_phi`, refreshed by `update_phi` each step).
- TBSD (two-term distillation with an MGDA weight). The two terms, for any prior:
    * structure term `g1 = w(t) (ε̂(x_t) - ε_φ(x_t))` at the scheduled t (VSD;
      for the closed-form prior a high t selects a coarse pyramid level, so this
      term moves large-scale layout and colour);
    * texture term `g2 = w(t_x) (ε̂_tn(x_{t_x}) - ε)` at a low noise level
      `t_x = t_min + texture_t_fraction (t - t_min)` (closed form: finest level,
      i.e. local texture statistics) with *target-negative guidance*
      `ε̂_tn = ε_φ + s (ε_c - ε_φ)`: the negative branch of CFG is the current
      texture's own score instead of the unconditional one, pushing away from
      what the texture already is toward the target.
  combined as `g = λ g1 + (1 - λ) g2` with the two-task min-norm (MGDA) weight
  `λ* = clip(((g2 - g1)·g2) / ||g1 - g2||², 0, 1)`, recomputed every step (so it
  varies over the run, λ(τ)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from nodes.components.priors import PriorBatch, ScorePrior

MethodName = Literal["sds", "vsd", "tbsd"]


def sds_weight(a_t: torch.Tensor) -> torch.Tensor:
    """w(t) = 1 - ᾱ_t with ᾱ_t = a_t²."""
    return 1.0 - a_t * a_t


def guided_eps(eps_cond: torch.Tensor, eps_negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance `ε_neg + s (ε_c - ε_neg)`."""
    return eps_negative + scale * (eps_cond - eps_negative)


def mgda_weight(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """Two-task min-norm weight: argmin_λ∈[0,1] ||λ g1 + (1-λ) g2||²."""
    diff = (g1 - g2).flatten().double()
    denom = float(diff @ diff)
    if denom <= 1e-30:
        return 0.5
    return float(min(1.0, max(0.0, float((g2.flatten().double() - g1.flatten().double()) @ g2.flatten().double()) / denom)))


def surrogate_loss(x: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`0.5 ||x - sg(x - g)||²` over masked elements, divided by the masked pixel count.

    Its gradient w.r.t. x is `g * mask / count` (count = masked pixels).
    """
    target = (x - grad).detach()
    count = mask.sum().clamp_min(1.0)
    return 0.5 * (((x - target) ** 2) * mask).sum() / count


def mask_like(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The image-space mask `[B, 1, H, W]` at the prior sample's resolution (latents are smaller),
    broadcast over the sample's channels."""
    mask = mask.to(device=x.device, dtype=x.dtype)
    if mask.shape[-2:] != x.shape[-2:]:
        mask = (torch.nn.functional.interpolate(mask, size=x.shape[-2:], mode="area") > 0.5).to(x.dtype)
    return mask.expand(-1, x.shape[1], -1, -1)


@dataclass
class StepResult:
    grad: torch.Tensor  # [B, C, H, W] on the prior-space sample
    info: dict[str, float]


def _noised(prior: ScorePrior, x: torch.Tensor, t: float, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    tt = torch.full((x.shape[0],), float(t))
    a, s = prior.noise_coeffs(tt)
    # drawn from the (CPU) generator, then moved: the same noise on every device
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return tt, a.to(x), s.to(x), noise, a.to(x) * x + s.to(x) * noise


def _eps_target(prior: ScorePrior, x_t: torch.Tensor, tt: torch.Tensor, batch: PriorBatch, scale: float) -> torch.Tensor:
    cond = prior.predict_eps(x_t, tt, batch, "cond")
    if scale == 1.0:
        return cond
    return guided_eps(cond, prior.predict_eps(x_t, tt, batch, "uncond"), scale)


@torch.no_grad()
def distill_gradient(
    method: MethodName,
    prior: ScorePrior,
    x: torch.Tensor,
    t: float,
    batch: PriorBatch,
    generator: torch.Generator,
    *,
    guidance_scale: float = 1.0,
    t_min: float = 0.02,
    texture_t_fraction: float = 0.25,
) -> StepResult:
    """The gradient `g` on the prior-space sample `x` for one step at noise level `t`."""
    x = x.detach()
    if method in ("vsd", "tbsd"):
        prior.update_phi(x, batch, generator)
    tt, a, s, noise, x_t = _noised(prior, x, t, generator)
    w = sds_weight(a)
    if method == "sds":
        return StepResult(w * (_eps_target(prior, x_t, tt, batch, guidance_scale) - noise), {"t": t})
    eps_phi = prior.predict_eps_phi(x_t, tt, batch)
    g1 = w * (_eps_target(prior, x_t, tt, batch, guidance_scale) - eps_phi)
    if method == "vsd":
        return StepResult(g1, {"t": t})
    if method != "tbsd":
        raise ValueError(f"unknown method '{method}'")
    t_x = t_min + texture_t_fraction * max(t - t_min, 0.0)
    tt2, a2, s2, noise2, x_t2 = _noised(prior, x, t_x, generator)
    eps_c = prior.predict_eps(x_t2, tt2, batch, "cond")
    eps_neg = prior.predict_eps_phi(x_t2, tt2, batch)
    g2 = sds_weight(a2) * (guided_eps(eps_c, eps_neg, max(guidance_scale, 1.0)) - noise2)
    m = mask_like(batch.masks, g1)
    lam = mgda_weight(g1 * m, g2 * m)
    return StepResult(lam * g1 + (1.0 - lam) * g2, {"t": t, "t_texture": t_x, "lambda": lam})
