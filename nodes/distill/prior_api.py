"""The contract between distillation methods (SDS, VSD, TBSD) and score priors.

Methods in `nodes.distill.methods` are written once against `ScorePrior`;
`closed_form` (pixels, `nodes.distill.closed_form`) and `stable_diffusion`
(VAE latents, `nodes.sd.prior`) implement it.

Noise convention (both priors): `x_t = a_t * x + s_t * eps`, `t` in (0, 1)
continuous; a discrete-time prior maps t to its nearest timestep index.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

EpsMode = Literal["cond", "uncond"]


@dataclass
class PriorBatch:
    """What the prior sees of one distillation step of one instance."""

    instance: str  # name of the instance being textured
    masks: torch.Tensor  # [B, 1, H, W] float, 1 on the instance's pixels (image space)
    depth: torch.Tensor | None = None  # [B, 1, H, W] optional geometry control
    normal: torch.Tensor | None = None  # [B, 3, H, W] optional geometry control


class ScorePrior(ABC):
    """A denoiser in its own sample space (pixels or latents)."""

    name: str = ""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Renders `[B, 3, H, W]` linear RGB in [0, 1] -> prior-space samples; differentiable."""

    @abstractmethod
    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) for t `[B]`, each shaped `[B, 1, 1, 1]`."""

    @abstractmethod
    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: EpsMode) -> torch.Tensor:
        """ε̂ for the instance's own references (`cond`) or the unconditional score (`uncond`). No grad."""

    @abstractmethod
    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        """VSD's ε_φ: the score of the current renders' distribution. No grad."""

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        """One training step of ε_φ on detached current samples (LoRA for SD); None when φ needs none."""
        return None


class SuperResPrior(ABC):
    """A conditional denoiser for anchored super-resolution SDS (cascaded SDS).

    Samples live in the prior's space (pixels for closed_form, the x4
    upscaler's latents for SD); the condition is the low-resolution anchor
    `x_cond = up(down(g(θ0)))` in linear RGB, frozen, with noise augmentation
    at `noise_level` in [0, 1].
    """

    name: str = ""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """High-resolution renders `[B, 3, H, W]` in [0, 1] -> prior space; differentiable."""

    @abstractmethod
    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) for t `[B]`, each shaped `[B, 1, 1, 1]`."""

    @abstractmethod
    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, noise_level: float, batch: PriorBatch
    ) -> torch.Tensor:
        """x̂_0 in prior space given the noisy sample and the (augmented) low-res condition. No grad."""
