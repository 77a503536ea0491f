"""Stable Diffusion x4 upscaler as a `SuperResPrior` (low-res concat + noise-level class label).

Sample space: the upscaler VAE's latents (`vae.encode(2 * srgb - 1).mean * 0.08333`),
which sit at a quarter of the image resolution, i.e. at the resolution of the
low-res condition. As in `StableDiffusionUpscalePipeline`, the condition (sRGB
in [-1, 1]) is noised with the low-res scheduler at an integer noise level in
[0, max_noise_level] and concatenated to the latent input; the same level is
the UNet's class label. The UNet's ε or v output is turned into x̂_0.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb

from nodes.components.priors import SUPERRES_PRIORS, PriorBatch, SuperResPrior, SuperResPriorConfig, require_weights
from nodes.sd.loading import SDComponents, encode_prompts, load_upscaler_components
from nodes.sd.noise_schedule import DiscreteNoiseSchedule


def load_upscaler_prior(
    weights: str,
    device: torch.device | str,
    *,
    prompts: Mapping[str, str] | None = None,
    guidance_scale: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionUpscalerPrior:
    """A `SuperResPrior` over the x4 upscaler's latents, loaded from `weights` (local dir or cached hub id).

    `encode` maps high-res renders [B,3,H,W] in [0,1] to latents [B,4,H/4,W/4]; `predict_x0(x_t, t, cond,
    noise_level, batch)` takes `cond` as linear RGB [B,3,h,w] in [0,1] (resized to the latent size) with noise
    augmentation at `noise_level` in [0,1] (times the pipeline's max_noise_level, 350). `prompts`: optional
    instance -> text (default empty prompt); `guidance_scale` > 1 applies CFG against the empty prompt. `seed`
    seeds the noise augmentation. Raises `graphflow.UserError(param="weights")` when missing; never downloads.
    """
    components = load_upscaler_components(weights, device, dtype)
    return StableDiffusionUpscalerPrior(components, prompts=prompts, guidance_scale=guidance_scale, seed=seed)



@SUPERRES_PRIORS.register("stable_diffusion")
def stable_diffusion_superres_prior(config: SuperResPriorConfig) -> StableDiffusionUpscalerPrior:
    """The x4 upscaler prior. Its noise-augmentation stream starts at seed 0, not `config.seed`, as it always has
    (cached upscaled textures stay what this would compute)."""
    return load_upscaler_prior(require_weights(config.weights, "stable_diffusion"), config.device)

class StableDiffusionUpscalerPrior(DiscreteNoiseSchedule, SuperResPrior):
    """x̂_0 from the SD x4 upscaler UNet for anchored SR-SDS (see the module docstring)."""

    name = "stable_diffusion"

    def __init__(
        self, components: SDComponents, *, prompts: Mapping[str, str] | None = None, guidance_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.sd = components
        self.unet = components.unet
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.prompts = dict(prompts or {})
        self.guidance_scale = guidance_scale
        self.use_scheduler(components.scheduler, self.device)
        self.size_multiple = components.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        # Noise augmentation of the condition draws from the prior's own stream: same calls, same bytes.
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._text_cache: dict[str, torch.Tensor] = {}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects [B, 3, H, W] renders, got {tuple(images.shape)}")
        srgb = linear_rgb_to_rgb(images.clamp(0.0, 1.0)) * 2.0 - 1.0
        height, width = images.shape[-2:]
        m = self.size_multiple
        size = (max(m, round(height / m) * m), max(m, round(width / m) * m))
        if tuple(srgb.shape[-2:]) != size:
            srgb = F.interpolate(srgb, size=size, mode="bilinear", align_corners=False, antialias=True)
        posterior = self.sd.vae.encode(srgb.to(self.dtype)).latent_dist
        return (posterior.mean * self.sd.vae.config.scaling_factor).to(images.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> linear RGB `[B, 3, 4h, 4w]` in [0, 1] (previews, tests)."""
        with torch.no_grad():
            srgb = self.sd.vae.decode(latents.to(self.dtype) / self.sd.vae.config.scaling_factor).sample
        return rgb_to_linear_rgb(((srgb.float() + 1.0) / 2.0).clamp(0.0, 1.0))

    def noise_level_label(self, noise_level: float) -> int:
        """noise_level in [0, 1] -> the pipeline's integer level in [0, max_noise_level]."""
        if not 0.0 <= float(noise_level) <= 1.0:
            raise ValueError(f"noise_level must be in [0, 1], got {noise_level}")
        return int(round(float(noise_level) * self.sd.max_noise_level))

    def augment_condition(self, cond: torch.Tensor, latent_hw: tuple[int, int], level: int) -> torch.Tensor:
        """Linear RGB condition -> sRGB in [-1, 1] at the latent size, noised by the low-res scheduler at `level`."""
        srgb = linear_rgb_to_rgb(cond.float().clamp(0.0, 1.0).to(self.device)) * 2.0 - 1.0
        if tuple(srgb.shape[-2:]) != tuple(latent_hw):
            srgb = F.interpolate(srgb, size=latent_hw, mode="bicubic", align_corners=False, antialias=True)
        if level == 0:
            return srgb
        noise = torch.randn(srgb.shape, generator=self.generator).to(self.device)
        levels = torch.full((srgb.shape[0],), level, dtype=torch.long)
        return self.sd.low_res_scheduler.add_noise(srgb, noise, levels)

    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, noise_level: float, batch: PriorBatch,
    ) -> torch.Tensor:
        batch_size = x_t.shape[0]
        if cond.ndim != 4 or cond.shape[1] != 3 or cond.shape[0] not in (1, batch_size):
            raise ValueError(f"cond must be [B, 3, h, w] linear RGB, got {tuple(cond.shape)}")
        level = self.noise_level_label(noise_level)
        low_res = self.augment_condition(cond, (x_t.shape[-2], x_t.shape[-1]), level).expand(batch_size, -1, -1, -1)
        index = self.timestep_index(t)
        if index.numel() == 1:
            index = index.expand(batch_size)
        labels = torch.full((batch_size,), level, dtype=torch.long, device=self.device)
        model_input = torch.cat([x_t.to(self.dtype), low_res.to(self.dtype)], dim=1)
        text = self._text(self.prompts.get(batch.instance, "")).expand(batch_size, -1, -1)
        with torch.no_grad():
            out = self.unet(model_input, index, encoder_hidden_states=text, class_labels=labels).sample
            if self.guidance_scale != 1.0:
                uncond = self.unet(
                    model_input, index, encoder_hidden_states=self._text("").expand(batch_size, -1, -1),
                    class_labels=labels,
                ).sample
                out = uncond + self.guidance_scale * (out - uncond)
        out = out.to(x_t.dtype)
        a_t, s_t = self.noise_coeffs(index.float() / (self.num_timesteps - 1))
        if self.prediction_type == "v_prediction":
            return a_t * x_t - s_t * out
        if self.prediction_type == "sample":
            return out
        return (x_t - s_t * out) / a_t

    def _text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text_cache:
            self._text_cache[prompt] = encode_prompts(self.sd, [prompt]).to(self.dtype)
        return self._text_cache[prompt]
