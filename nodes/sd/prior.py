"""Stable Diffusion score prior: latent SDS/VSD through the VAE, per-instance IP-Adapter references, LoRA ε_φ.

Sample space: VAE latents (`vae.encode(2 * srgb - 1).mean * scaling_factor`).
Noise: `x_t = a_t x + s_t ε` with `a_t = sqrt(ᾱ)`, `s_t = sqrt(1 - ᾱ)` from the
scheduler's `alphas_cumprod`; continuous t in (0, 1) maps to the nearest of
its `num_train_timesteps` indices.

Conditioning of an instance: its text (the Reference's prompt, else its
material class) through the CLIP text encoder, and its reference images
through the IP-Adapter, restricted by masks to its own pixels (diffusers'
masked `IPAdapterAttnProcessor2_0`: each instance's image tokens are one
"image" of one IP-Adapter, with one mask each). The unconditional score uses
the empty prompt and zero image embeddings, as diffusers' pipelines do.

`predict_eps(mode="cond")` returns the raw conditional ε_c; classifier-free
guidance `ε_u + s (ε_c - ε_u)` is the distillation method's job (the same for
every prior), unless `guidance_scale` is given at load time.

Optional: a depth ControlNet (when the batch carries `depth`), E2's Realiz3D
domain shifter (`domain_adapter`). Renders are taken in the `Views` row order
(bottom-up) and flipped to upright for SD internally. VSD's ε_φ is a peft
LoRA on the UNet's attention projections (B = 0 at start, so ε_φ = ε_c),
trained by `update_phi` with the standard diffusion loss.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb

from graphflow import UserError
from nodes.components.priors import SCORE_PRIORS, EpsMode, PriorBatch, ScorePrior, ScorePriorConfig, require_weights
from nodes.sd.domain_shifter import apply_domain_shifting, load_adapter, remove_domain_shifting
from nodes.sd.loading import SDComponents, encode_prompts, load_sd_components
from nodes.sd.noise_schedule import DiscreteNoiseSchedule
from nodes.types import DomainAdapter, Reference

PHI_ADAPTER = "graphflow_vsd_phi"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_sd_prior(
    weights: str,
    references: Mapping[str, Reference],
    device: torch.device | str,
    *,
    guidance_scale: float | None = None,
    use_ip_adapter: bool = True,
    ip_adapter_scale: float = 1.0,
    controlnet: str | None = "auto",
    controlnet_scale: float = 1.0,
    lora_rank: int = 4,
    lora_lr: float = 1e-3,
    seed: int = 0,
    rows_bottom_up: bool = True,
    domain_adapter: DomainAdapter | str | None = None,
    domain: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionPrior:
    """A `ScorePrior` over SD latents, loaded from `weights` (a local diffusers dir or a cached hub id).

    `references`: instance name -> Reference; its prompt (or material class) is the text condition and its
    images the IP-Adapter condition of that instance's pixels. `guidance_scale=None` (default): `cond` is the raw
    ε_c and the distillation method applies CFG; a float makes `cond` return the guided ε̂ instead.
    `controlnet`: a depth ControlNet used whenever a `PriorBatch` carries `depth` — "auto" (the `controlnet/`
    subfolder of `weights` when present), None (off) or a path / cached hub id.
    `rows_bottom_up` (default, the `Views` convention: row 0 is the bottom of the image, as in nvdiffrast):
    renders, masks, depth and latents are in view row order and flipped to upright for SD internally, so
    callers need not care; pass False for upright (top-down) images.
    `domain_adapter` (a Realiz3D `DomainAdapter`, `nodes.types`, or its .safetensors path) shifts the
    UNet's domain at every call: `domain="real"` (default with an adapter) uses the adapter's schedule (synthetic
    early blocks at high noise), `"synthetic"` runs every block synthetic. `domain` without an adapter is a
    UserError.
    `seed` initialises the VSD LoRA (ε_φ) deterministically. Raises `graphflow.UserError(param="weights")` when
    the weights (or, with `use_ip_adapter`, the IP-Adapter) are missing; never downloads.
    """
    if domain is not None and domain_adapter is None:
        raise UserError(f"domain '{domain}' needs a trained domain adapter for the stable_diffusion prior",
                        param="domain", hint="train one with train.domain_shifter and pass it, or remove domain")
    if isinstance(domain_adapter, str):
        domain_adapter = load_adapter(domain_adapter)
    components = load_sd_components(weights, device, dtype, use_ip_adapter=use_ip_adapter, controlnet=controlnet)
    return StableDiffusionPrior(
        components, references, guidance_scale=guidance_scale, ip_adapter_scale=ip_adapter_scale,
        controlnet_scale=controlnet_scale, lora_rank=lora_rank, lora_lr=lora_lr, seed=seed,
        rows_bottom_up=rows_bottom_up, domain_adapter=domain_adapter, domain=domain or "real",
    )



@SCORE_PRIORS.register("stable_diffusion")
def stable_diffusion_prior(config: ScorePriorConfig) -> StableDiffusionPrior:
    """The SD prior conditioned on the config's instance and reference, domain-shifted when asked."""
    return load_sd_prior(require_weights(config.weights, "stable_diffusion"), {config.instance: config.reference},
                         config.device, seed=config.seed, domain_adapter=config.domain_adapter, domain=config.domain)

def prompt_for(reference: Reference) -> str:
    """The text condition of a reference: its own prompt, else one built from its material class."""
    if reference.prompt:
        return reference.prompt
    if reference.material == "generic":
        return "a seamless texture"
    return f"a seamless {reference.material} texture, high detail"


def latent_image_size(height: int, width: int, sample_size: int, vae_factor: int, multiple: int) -> tuple[int, int]:
    """Image size fed to the VAE: longer side at the UNet's native resolution, both sides multiples of `multiple`."""
    native = sample_size * vae_factor
    scale = native / max(height, width)
    snap = lambda side: max(multiple, int(round(side * scale / multiple)) * multiple)  # noqa: E731
    return snap(height), snap(width)


def depth_control_image(depth: torch.Tensor, size: tuple[int, int], batch_size: int) -> torch.Tensor:
    """Camera distance `[B, 1, H, W]` (0 = empty) -> a depth-ControlNet image `[B, 3, h, w]` in [0, 1].

    Depth ControlNets are trained on MiDaS-style maps: inverse depth, normalised per image, bright = near,
    background black.
    """
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[0] not in (1, batch_size):
        raise ValueError(f"depth must be [B, 1, H, W], got {tuple(depth.shape)}")
    depth = depth.float()
    valid = depth > 0
    inverse = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    flat_valid = valid.flatten(1)
    big = torch.finfo(inverse.dtype).max
    low = torch.where(flat_valid, inverse.flatten(1), torch.full_like(inverse.flatten(1), big)).amin(1)
    high = inverse.flatten(1).amax(1)
    low = torch.where(flat_valid.any(1), low, torch.zeros_like(low)).view(-1, 1, 1, 1)
    span = (high.view(-1, 1, 1, 1) - low).clamp_min(1e-6)
    # Nearest -> 1, farthest visible -> 0.1 (kept apart from the black background).
    image = torch.where(valid, 0.1 + 0.9 * (inverse - low) / span, torch.zeros_like(inverse))
    image = F.interpolate(image, size=size, mode="area")
    return image.expand(batch_size, 3, -1, -1)


class StableDiffusionPrior(DiscreteNoiseSchedule, ScorePrior):
    """SD 1.x/2.x UNet as a latent-space denoiser for SDS/VSD (see the module docstring)."""

    name = "stable_diffusion"

    def __init__(
        self,
        components: SDComponents,
        references: Mapping[str, Reference],
        *,
        guidance_scale: float | None = None,
        ip_adapter_scale: float = 1.0,
        controlnet_scale: float = 1.0,
        lora_rank: int = 4,
        lora_lr: float = 1e-3,
        seed: int = 0,
        rows_bottom_up: bool = True,
        domain_adapter: DomainAdapter | None = None,
        domain: str = "real",
    ) -> None:
        self.sd = components
        self.rows_bottom_up = rows_bottom_up
        self.domain_adapter = domain_adapter
        self.domain = domain
        self.unet = components.unet
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.guidance_scale = guidance_scale
        self.ip_adapter_scale = ip_adapter_scale
        self.uses_ip_adapter = components.image_encoder is not None
        self.controlnet = components.controlnet
        self.controlnet_scale = controlnet_scale
        self.references = dict(references)
        self.use_scheduler(components.scheduler, self.device)
        # Latent sides must survive the UNet's downsamplings.
        self.size_multiple = components.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

        names = sorted(self.references)
        self.text_embeds: dict[str, torch.Tensor] = dict(
            zip(names, encode_prompts(components, [prompt_for(self.references[n]) for n in names]))
        )
        self.empty_text = encode_prompts(components, [""])[0]
        self.image_embeds: dict[str, torch.Tensor] = {}
        if self.uses_ip_adapter:
            for name in names:
                self.image_embeds[name] = self._encode_reference_images(name)
        self._init_lora(lora_rank, lora_lr, seed)

    # ---- sample space ---------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Linear RGB `[B, 3, H, W]` in [0, 1] -> latents `[B, 4, h, w]` (differentiable, VAE posterior mean)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects [B, 3, H, W] renders, got {tuple(images.shape)}")
        srgb = linear_rgb_to_rgb(images.clamp(0.0, 1.0)) * 2.0 - 1.0
        if self.rows_bottom_up:
            srgb = srgb.flip(-2)  # SD was trained on upright images
        size = self._image_size(images.shape[-2], images.shape[-1])
        if tuple(srgb.shape[-2:]) != size:
            srgb = F.interpolate(srgb, size=size, mode="bilinear", align_corners=False, antialias=True)
        posterior = self.sd.vae.encode(srgb.to(self.dtype)).latent_dist
        latents = (posterior.mean * self.sd.vae.config.scaling_factor).to(images.dtype)
        return latents.flip(-2) if self.rows_bottom_up else latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> linear RGB `[B, 3, H, W]` in [0, 1] (for previews and tests)."""
        upright = latents.flip(-2) if self.rows_bottom_up else latents
        with torch.no_grad():
            srgb = self.sd.vae.decode(upright.to(self.dtype) / self.sd.vae.config.scaling_factor).sample
        image = rgb_to_linear_rgb(((srgb.float() + 1.0) / 2.0).clamp(0.0, 1.0))
        return image.flip(-2) if self.rows_bottom_up else image

    def _image_size(self, height: int, width: int) -> tuple[int, int]:
        sample_size = self.unet.config.sample_size
        return latent_image_size(height, width, sample_size, self.sd.vae_scale_factor, self.size_multiple)

    # ---- scores ----------------------------------------------------------------------------------------------
    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: EpsMode) -> torch.Tensor:
        return self.predict_eps_regions(x_t, t, self._batch_masks(batch), mode, depth=batch.depth)

    def predict_eps_regions(
        self, x_t: torch.Tensor, t: torch.Tensor, masks: Mapping[str, torch.Tensor], mode: EpsMode,
        depth: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ε̂ with several instances in the same images: each name's reference routed to its mask `[B, 1, H, W]`.

        `depth` `[B, 1, H, W]` (camera distance, 0 = empty) drives the depth ControlNet when one is loaded.
        """
        if mode not in ("cond", "uncond"):
            raise ValueError(f"mode must be 'cond' or 'uncond', got {mode!r}")
        self._check_instances(masks)
        if mode == "uncond":
            return self._eps(x_t, t, masks, conditional=False, lora=False, depth=depth)
        cond = self._eps(x_t, t, masks, conditional=True, lora=False, depth=depth)
        if self.guidance_scale is None:
            return cond
        uncond = self._eps(x_t, t, masks, conditional=False, lora=False, depth=depth)
        return uncond + self.guidance_scale * (cond - uncond)

    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        masks = self._batch_masks(batch)
        self._check_instances(masks)
        return self._eps(x_t, t, masks, conditional=True, lora=True, depth=batch.depth)

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        """One diffusion-loss step of the LoRA on the detached current latents (VSD's ε_φ)."""
        masks = self._batch_masks(batch)
        self._check_instances(masks)
        x0 = x0.detach().float()
        batch_size = x0.shape[0]
        index = torch.randint(0, self.num_timesteps, (batch_size,), generator=generator, device=generator.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        t = index.to(self.device).float() / (self.num_timesteps - 1)
        a_t, s_t = self.noise_coeffs(t)
        x_t = a_t * x0 + s_t * noise
        self.lora_optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            eps_phi = self._eps(x_t, t, masks, conditional=True, lora=True, grad=True, depth=batch.depth)
            loss = F.mse_loss(eps_phi.float(), noise)
            loss.backward()
        self.unet.disable_adapters()
        self.lora_optimizer.step()
        return float(loss.detach())

    # ---- internals -------------------------------------------------------------------------------------------
    def _batch_masks(self, batch: PriorBatch) -> dict[str, torch.Tensor]:
        """{instance: mask}; a prior built for a single reference serves that reference whatever the item's name."""
        if batch.instance not in self.references and len(self.references) == 1:
            return {next(iter(self.references)): batch.masks}
        return {batch.instance: batch.masks}

    def _check_instances(self, masks: Mapping[str, torch.Tensor]) -> None:
        unknown = [name for name in masks if name not in self.references]
        if unknown:
            raise UserError(
                f"instance(s) {', '.join(unknown)} have no reference for the stable_diffusion prior",
                item=unknown[0], param="references", hint="bind a reference image to every textured instance",
            )

    def _eps(
        self, x_t: torch.Tensor, t: torch.Tensor, masks: Mapping[str, torch.Tensor], *, conditional: bool, lora: bool,
        grad: bool = False, depth: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's ε on samples in the caller's row order (flipped to upright and back when bottom-up)."""
        if not self.rows_bottom_up:
            return self._eps_upright(x_t, t, masks, conditional=conditional, lora=lora, grad=grad, depth=depth)
        out = self._eps_upright(
            x_t.flip(-2), t, {name: mask.flip(-2) for name, mask in masks.items()}, conditional=conditional,
            lora=lora, grad=grad, depth=None if depth is None else depth.flip(-2),
        )
        return out.flip(-2)

    def _eps_upright(
        self, x_t: torch.Tensor, t: torch.Tensor, masks: Mapping[str, torch.Tensor], *, conditional: bool, lora: bool,
        grad: bool = False, depth: torch.Tensor | None = None,
    ) -> torch.Tensor:
        names = list(masks)
        batch_size = x_t.shape[0]
        index = self.timestep_index(t)
        if index.numel() == 1:
            index = index.expand(batch_size)
        if conditional:
            # Several instances share one image: their prompts are joined; images stay routed by mask.
            text = self.text_embeds[names[0]] if len(names) == 1 else encode_prompts(
                self.sd, [", ".join(prompt_for(self.references[n]) for n in names)])[0]
        else:
            text = self.empty_text
        text = text.unsqueeze(0).expand(batch_size, -1, -1).to(self.dtype)
        added_cond: dict[str, list[torch.Tensor]] | None = None
        cross_attention_kwargs: dict[str, list[torch.Tensor]] | None = None
        if self.uses_ip_adapter:
            embeds = torch.stack([self.image_embeds[n] for n in names])  # [N, D]
            if not conditional:
                embeds = torch.zeros_like(embeds)
            added_cond = {"image_embeds": [embeds.unsqueeze(0).expand(batch_size, -1, -1).to(self.dtype)]}
            cross_attention_kwargs = {"ip_adapter_masks": [self._ip_masks(masks, x_t.shape[-2:], batch_size)]}
            self._set_ip_scale()
        if lora:
            self.unet.enable_adapters()
            self.unet.set_adapter(PHI_ADAPTER)
            # peft toggles requires_grad when adapters are enabled/disabled; φ's parameters always train.
            for parameter in self.lora_parameters:
                parameter.requires_grad_(True)
        else:
            self.unet.disable_adapters()
        # With grad, the LoRA stays enabled until update_phi has run backward: peft's disable_adapters() clears
        # requires_grad, and AccumulateGrad skips leaves that no longer require grad.
        self._set_domain(index)
        with torch.set_grad_enabled(grad):
            residuals: dict[str, object] = {}
            if self.controlnet is not None and depth is not None:
                # Like diffusers' ControlNet pipelines: the control sees the text only, both CFG branches.
                control = depth_control_image(depth, (x_t.shape[-2] * self.sd.vae_scale_factor,
                                                      x_t.shape[-1] * self.sd.vae_scale_factor), batch_size)
                with torch.no_grad():
                    down, mid = self.controlnet(
                        x_t.to(self.dtype), index, encoder_hidden_states=text,
                        controlnet_cond=control.to(device=self.device, dtype=self.dtype),
                        conditioning_scale=self.controlnet_scale, return_dict=False,
                    )
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            out = self.unet(
                x_t.to(self.dtype), index, encoder_hidden_states=text, added_cond_kwargs=added_cond,
                cross_attention_kwargs=cross_attention_kwargs, **residuals,
            ).sample
        if lora and not grad:
            self.unet.disable_adapters()  # the cached UNet is shared: leave it plain for other users
        out = out.to(x_t.dtype)
        if self.prediction_type == "v_prediction":
            a_t, s_t = self.noise_coeffs(index.float() / (self.num_timesteps - 1))
            out = a_t.to(out.dtype) * out + s_t.to(out.dtype) * x_t
        return out

    def _ip_masks(self, masks: Mapping[str, torch.Tensor], latent_hw: torch.Size, batch_size: int) -> torch.Tensor:
        """Per-instance binary masks `[B, N, h·f, w·f]` at the VAE input resolution (aspect ratio of the latents)."""
        factor = self.sd.vae_scale_factor
        size = (int(latent_hw[0]) * factor, int(latent_hw[1]) * factor)
        out = []
        for name, mask in masks.items():
            if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch_size):
                raise ValueError(f"mask of '{name}' must be [B, 1, H, W], got {tuple(mask.shape)}")
            resized = F.interpolate(mask.float().to(self.device), size=size, mode="area")
            out.append((resized >= 0.5).to(self.dtype).expand(batch_size, -1, -1, -1))
        return torch.cat(out, dim=1)

    def _set_domain(self, index: torch.Tensor) -> None:
        """Attach/schedule the Realiz3D domain shifter for this call, or make sure none is left on the shared UNet."""
        if self.domain_adapter is None:
            remove_domain_shifting(self.unet)
            return
        t = index.float() / self.num_timesteps  # E2's convention: t = i / N
        apply_domain_shifting(self.unet, self.domain_adapter, t, domain=self.domain)  # type: ignore[arg-type]

    def close(self) -> None:
        """Leave the shared, cached UNet plain (no domain shifter, LoRA disabled)."""
        remove_domain_shifting(self.unet)
        self.unet.disable_adapters()

    def _set_ip_scale(self) -> None:
        from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

        for processor in self.unet.attn_processors.values():
            if isinstance(processor, IPAdapterAttnProcessor2_0):
                processor.scale = [self.ip_adapter_scale] * len(processor.scale)

    def _encode_reference_images(self, name: str) -> torch.Tensor:
        """Mean CLIP image embedding `[D]` of an instance's reference images."""
        reference = self.references[name]
        if not reference.images:
            raise UserError(f"instance '{name}' has no reference images for the IP-Adapter", item=name,
                            param="references", hint="bind at least one image, or set use_ip_adapter false")
        encoder = self.sd.image_encoder
        size = int(encoder.config.image_size)
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        pixels = []
        for image in reference.images:
            srgb = linear_rgb_to_rgb(image.float().clamp(0, 1).to(self.device).unsqueeze(0))
            srgb = F.interpolate(srgb, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
            pixels.append((srgb.clamp(0, 1) - mean) / std)
        with torch.no_grad():
            embeds = encoder(torch.cat(pixels).to(self.dtype)).image_embeds
        return embeds.mean(dim=0)

    def _init_lora(self, rank: int, lr: float, seed: int) -> None:
        """A fresh LoRA ε_φ on the attention projections (B = 0, so ε_φ starts equal to ε_c); A from `seed`."""
        from peft import LoraConfig

        if PHI_ADAPTER in getattr(self.unet, "peft_config", {}):
            # One VSD run at a time per cached UNet: a new prior restarts φ.
            self.unet.delete_adapters(PHI_ADAPTER)
        config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True, target_modules=LORA_TARGETS)
        self.unet.add_adapter(config, adapter_name=PHI_ADAPTER)
        generator = torch.Generator().manual_seed(seed)
        self.lora_parameters: list[torch.nn.Parameter] = []
        for module_name, parameter in self.unet.named_parameters():
            if PHI_ADAPTER not in module_name:
                continue
            with torch.no_grad():
                if ".lora_A." in module_name:
                    bound = 1.0 / math.sqrt(parameter.shape[1])
                    values = torch.rand(parameter.shape, generator=generator) * 2 * bound - bound
                    parameter.copy_(values.to(parameter.dtype))
            # LoRA trains in fp32 even when the UNet runs in fp16.
            parameter.data = parameter.data.float()
            parameter.requires_grad_(True)
            self.lora_parameters.append(parameter)
        self.unet.disable_adapters()
        self.lora_optimizer = torch.optim.AdamW(self.lora_parameters, lr=lr, weight_decay=0.0)

    def lora_state(self) -> dict[str, torch.Tensor]:
        """A copy of the LoRA weights (tests, checkpoints)."""
        return {n: p.detach().clone() for n, p in self.unet.named_parameters() if PHI_ADAPTER in n}
