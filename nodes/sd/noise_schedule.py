"""The discrete DDPM noise schedule of a diffusers scheduler, read in the priors' continuous time.

Both Stable Diffusion priors (`prior.StableDiffusionPrior`, `upscaler.StableDiffusionUpscalerPrior`)
map the distillation loop's `t` in (0, 1) to the nearest of the scheduler's `T` training timesteps
and take `(a_t, s_t) = (sqrt(ᾱ), sqrt(1 - ᾱ))` from its table; this mixin is that code, once.
"""
from __future__ import annotations

from typing import Any

import torch


class DiscreteNoiseSchedule:
    """Mixin: `noise_coeffs` and `timestep_index` over a scheduler's ᾱ table (call `use_scheduler` first)."""

    device: torch.device
    alphas_cumprod: torch.Tensor
    num_timesteps: int
    prediction_type: str

    def use_scheduler(self, scheduler: Any, device: torch.device) -> None:
        """Read `scheduler` (a diffusers DDPMScheduler): its prediction type and ᾱ table, on `device`."""
        self.prediction_type = scheduler.config.prediction_type
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        self.num_timesteps = int(self.alphas_cumprod.shape[0])

    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha_bar = self.alphas_cumprod[self.timestep_index(t)]
        return alpha_bar.sqrt().view(-1, 1, 1, 1), (1.0 - alpha_bar).sqrt().view(-1, 1, 1, 1)

    def timestep_index(self, t: torch.Tensor) -> torch.Tensor:
        """Continuous t in (0, 1) -> nearest discrete index in [0, T-1]."""
        t = torch.as_tensor(t, device=self.device, dtype=torch.float32).reshape(-1)
        return (t * (self.num_timesteps - 1)).round().long().clamp(0, self.num_timesteps - 1)


__all__ = ["DiscreteNoiseSchedule"]
