"""The contract between distillation methods (SDS, VSD, TBSD) and score priors, and the prior registries.

Methods in `nodes.distill.methods` are written once against `ScorePrior`;
`closed_form` (pixels, `nodes.distill.closed_form`) and `stable_diffusion`
(VAE latents, `nodes.sd.prior`) implement it, and register a factory under
their name in `SCORE_PRIORS` (super-resolution: `SuperResPrior`,
`SUPERRES_PRIORS`). A factory takes one typed config (`ScorePriorConfig`,
`SuperResPriorConfig`): each prior reads the fields it understands and says so
with a UserError when it is asked for something it cannot do.

Noise convention (both priors): `x_t = a_t * x + s_t * eps`, `t` in (0, 1)
continuous; a discrete-time prior maps t to its nearest timestep index.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from graphflow import UserError
from nodes.types import DomainAdapter, Reference

from .registry import ComponentRegistry

EpsMode = Literal["cond", "uncond"]


@dataclass
class PriorBatch:
    """What the prior sees of one distillation step of one instance."""

    instance: str  # name of the instance being textured
    masks: torch.Tensor  # [B, 1, H, W] float, 1 on the instance's pixels (image space)
    depth: torch.Tensor | None = None  # [B, 1, H, W] optional geometry control
    normal: torch.Tensor | None = None  # [B, 3, H, W] optional geometry control


class NoisedSampleSpace(ABC):
    """A prior's own sample space (pixels or latents) and its noise schedule."""

    name: str = ""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Renders `[B, 3, H, W]` linear RGB in [0, 1] -> prior-space samples; differentiable."""

    @abstractmethod
    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, s_t) for t `[B]`, each shaped `[B, 1, 1, 1]`."""


class ScorePrior(NoisedSampleSpace):
    """A denoiser in its own sample space (pixels or latents)."""

    @abstractmethod
    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: EpsMode) -> torch.Tensor:
        """ε̂ for the instance's own references (`cond`) or the unconditional score (`uncond`). No grad."""

    @abstractmethod
    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        """VSD's ε_φ: the score of the current renders' distribution. No grad."""

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        """One training step of ε_φ on detached current samples (LoRA for SD); None when φ needs none."""
        return None


class SuperResPrior(NoisedSampleSpace):
    """A conditional denoiser for anchored super-resolution SDS (cascaded SDS).

    Samples live in the prior's space (pixels for closed_form, the x4
    upscaler's latents for SD); the condition is the low-resolution anchor
    `x_cond = up(down(g(θ0)))` in linear RGB, frozen, with noise augmentation
    at `noise_level` in [0, 1].
    """

    @abstractmethod
    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, noise_level: float, batch: PriorBatch
    ) -> torch.Tensor:
        """x̂_0 in prior space given the noisy sample and the (augmented) low-res condition. No grad."""


@dataclass(frozen=True)
class ScorePriorConfig:
    """What a score prior may be built from; each factory reads the fields it understands."""

    instance: str  # the instance being textured (the SD prior conditions on its reference)
    reference: Reference
    images: Sequence[torch.Tensor]  # the reference's checked images, float `[3, H, W]`
    device: torch.device | str
    seed: int
    t_range: tuple[float, float] = (0.02, 0.98)
    guidance_images: Sequence[torch.Tensor] | None = None  # union bank for classifier-free guidance
    finest_only: bool = False
    patch_size: int = 5
    levels: int = 3
    bank_size: int = 1024
    stride: int = 3
    weights: str | None = None  # model weights (a local diffusers dir or a cached hub id)
    domain: str | None = None  # "real" | "synthetic": domain mode of a domain-shifting prior
    domain_adapter: DomainAdapter | None = None


@dataclass(frozen=True)
class SuperResPriorConfig:
    """What a super-resolution prior may be built from; each factory reads the fields it understands."""

    images: Sequence[torch.Tensor]  # high-resolution exemplars, float `[3, H, W]`
    factor: int
    device: torch.device | str
    seed: int
    patch_size: int = 5
    bank_size: int = 1024
    stride: int = 3
    weights: str | None = None


ScorePriorFactory = Callable[[ScorePriorConfig], ScorePrior]
SuperResPriorFactory = Callable[[SuperResPriorConfig], SuperResPrior]

SCORE_PRIORS: ComponentRegistry[ScorePriorFactory] = ComponentRegistry("score prior", param="prior")
SUPERRES_PRIORS: ComponentRegistry[SuperResPriorFactory] = ComponentRegistry("super-resolution prior", param="prior")


def score_prior(name: str, config: ScorePriorConfig) -> ScorePrior:
    """The score prior called `name`; an unknown name is a UserError listing the known ones."""
    return SCORE_PRIORS.get(name)(config)


def superres_prior(name: str, config: SuperResPriorConfig) -> SuperResPrior:
    """The super-resolution prior called `name`; an unknown name is a UserError listing the known ones."""
    return SUPERRES_PRIORS.get(name)(config)


def require_weights(weights: str | None, prior: str) -> str:
    """The weights a learned prior needs; none given is a UserError saying how to pass them."""
    if not weights:
        raise UserError(f"prior '{prior}' needs model weights", param="weights",
                        hint="pass --input weights=DIR (graphs/texture_scene_sd.yaml) or set params.weights to a "
                             "local diffusers directory")
    return str(weights)


def refuse_domain(config: ScorePriorConfig, prior: str) -> None:
    """For priors that cannot shift domains: a domain or an adapter asked of them is a UserError."""
    if config.domain is not None or config.domain_adapter is not None:
        raise UserError(f"prior '{prior}' cannot shift domains", param="domain",
                        hint="remove params.domain and the domain_adapter input, or use prior stable_diffusion")


__all__ = [
    "SCORE_PRIORS",
    "SUPERRES_PRIORS",
    "EpsMode",
    "NoisedSampleSpace",
    "PriorBatch",
    "ScorePrior",
    "ScorePriorConfig",
    "SuperResPrior",
    "SuperResPriorConfig",
    "refuse_domain",
    "require_weights",
    "score_prior",
    "superres_prior",
]
