"""Stable Diffusion nodes: Realiz3D domain-adapter training (`train.domain_shifter`, `train.control`).

The outputs are `DomainAdapter` values (safetensors + JSON in the cache), so
a trained adapter is reused by every later run with the same inputs. The
heavy lifting is in `nodes.sd.training` and `nodes.sd.domain_shifter`;
diffusers/peft are imported only when a node runs (they are the `sd` extra).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Keyed, Node, Resources, UserError, register
from nodes.render.ops import sample_texture_map
from nodes.scene.images import load_image

from ..types import DomainAdapter, DomainSchedule, Reference, TextureMap, Views
from .domain_shifter import DomainShifter
from .loading import encode_prompts
from .loading import load_sd_components as load_shared
from .training import (CONTROL_ADAPTER_NAME, GEOMETRY_CHANNELS, LORA_TARGETS, default_schedule,
                       geometry_from_views, prepare_images, train_control, train_domain_shifter)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class _TrainingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: str = Field(..., description="local diffusers Stable Diffusion directory (unet, vae, text_encoder, "
                                          "tokenizer, scheduler)")
    real_dir: str | None = Field(None, description="folder of real photographs (added to `references`)")
    rank: int = Field(4, ge=1, le=256, description="rank of the low-rank maps / LoRA")
    steps: int = Field(500, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=1.0)
    batch_size: int = Field(4, ge=2, le=1024)
    resolution: int = Field(512, ge=8, le=4096, description="training image size in pixels (square)")
    crops_per_image: int = Field(8, ge=1, le=1024, description="random crops taken from each real image")
    seed: int = Field(0, ge=0, description="training seed (the run's: ctx.seed)")


# ---------------------------------------------------------------- helpers


def load_sd_components(weights: str, device: torch.device) -> dict[str, Any]:
    """A private copy of the UNet (training hooks and LoRA must not touch the loader's shared, cached one),
    the shared frozen VAE, the DDPM training scheduler and the null-prompt context, from `weights`
    (without the optional `sd` extra, a UserError saying how to install it)."""
    shared = load_shared(weights, device, use_ip_adapter=False)
    unet = copy.deepcopy(shared.unet)
    with torch.no_grad():
        context = encode_prompts(shared, [""])
    return {"unet": unet, "vae": shared.vae, "scheduler": shared.scheduler, "context": context,
            "downscale": shared.vae_scale_factor}


@torch.no_grad()
def encode_images(vae: Any, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """sRGB images `[N, 3, H, W]` in [0, 1] -> scaled VAE latents (posterior mean: deterministic)."""
    param = next(vae.parameters())
    out = [vae.encode((images[i:i + batch] * 2 - 1).to(param)).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(out) * float(vae.config.scaling_factor)


def load_image_folder(folder: str, param: str) -> list[torch.Tensor]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"folder '{folder}' does not exist", param=param, hint="give a folder of PNG/JPEG images")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"folder '{folder}' holds no images", param=param,
                        hint=f"put {', '.join(IMAGE_SUFFIXES[:3])} files in it")
    return [load_image(p) for p in files]


def reference_images(references: Keyed[Reference] | None, port: str) -> list[torch.Tensor]:
    """All images of a keyed reference collection, checked: `[3, H, W]`, finite."""
    images: list[torch.Tensor] = []
    for name, ref in (references.items() if references is not None else ()):
        for i, img in enumerate(ref.images):
            if img.dim() != 3 or img.shape[0] != 3 or min(img.shape[-2:]) < 2 or not bool(torch.isfinite(img).all()):
                raise UserError(f"input `{port}` entry '{name}' image {i} is unusable (shape {tuple(img.shape)})",
                                item=name, hint="images must be finite linear RGB [3, H, W]; replace the file")
            images.append(img)
    return images


def real_images(references: Keyed[Reference] | None, real_dir: str | None) -> list[torch.Tensor]:
    images = reference_images(references, "references")
    if real_dir:
        images += load_image_folder(real_dir, "real_dir")
    return images


def render_views(views: Views, texture: Keyed[TextureMap]) -> torch.Tensor:
    """Each view textured with its instances' maps -> `[B, 3, H, W]` linear RGB, image rows top first."""
    batch, height, width = views.instance_id.shape
    out = torch.zeros(batch, height, width, 3)
    for name, tex in texture.items():
        if name not in views.instance_names:  # an instance no camera sees adds nothing to the renders
            continue
        mask = views.instance_id == views.instance_names.index(name)
        if bool(mask.any()):
            out = out + sample_texture_map(tex.image[:3].float(), views.uv.float(), mask)
    return out.flip(1).permute(0, 3, 1, 2).clamp(0, 1)  # nvdiffrast rows (bottom first) -> image rows


def synthetic_renders(views: Views | None, texture: Keyed[TextureMap] | None, resolution: int) -> torch.Tensor | None:
    """Renders resized to `[B, 3, res, res]` sRGB in [0, 1], or None without views + texture."""
    if views is None and texture is None:
        return None
    if views is None or texture is None:
        missing = "views" if views is None else "texture"
        raise UserError(f"synthetic renders need both `views` and `texture`; `{missing}` is not connected",
                        hint=f"connect the {missing} input (or pass synthetic images through `synthetic`)")
    renders = F.interpolate(render_views(views, texture), size=(resolution, resolution), mode="bilinear",
                            antialias=True, align_corners=False)
    return kornia.color.linear_rgb_to_rgb(renders).clamp(0, 1)


def _progress_callback(bar: Any) -> Any:
    def update(step: int, loss: float) -> None:
        bar.update(loss=round(loss, 5))

    return update


# ---------------------------------------------------------------- stage 1


class _TrainingNode(Node):
    """What the two Realiz3D training nodes share: their resources (params: `_TrainingParams`)."""

    # gpu=False: a Ray task asking for a GPU never starts on CPU-only clusters; ctx.device gives CUDA when there
    resources = Resources(gpu=False, memory_mb=8192)


@register
class TrainDomainShifter(_TrainingNode):
    """Realiz3D stage 1: domain shifters on a frozen SD UNet, from real and synthetic images (control null)."""

    name = "train.domain_shifter"
    version = 2  # 2: an explicit `seed` goes through ctx.seed like every node's (was used as is)

    class Params(_TrainingParams):
        embed_dim: int = Field(64, ge=1, le=4096, description="size of the two domain embeddings")
        synthetic_blocks: list[int] | None = Field(
            None, description="inference schedule: blocks (execution order) run in synthetic mode at high noise; "
                              "default: the first third")
        synthetic_t_min: float = Field(0.6, ge=0.0, le=1.0, description="inference schedule: those blocks are "
                                                                        "synthetic for noise time t >= this")

    def run(self, ctx: Context, references: Keyed[Reference] | None = None,
            synthetic: Keyed[Reference] | None = None, views: Views | None = None,
            texture: Keyed[TextureMap] | None = None) -> DomainAdapter:
        p = self.params
        gen = ctx.generator
        real = real_images(references, p.real_dir)
        if not real:
            raise UserError("no real images to train on", param="real_dir",
                            hint="connect `references` or set `real_dir` to a folder of photographs")
        synthetic_images = reference_images(synthetic, "synthetic")
        renders = synthetic_renders(views, texture, p.resolution)
        if not synthetic_images and renders is None:
            raise UserError("no synthetic images to train on",
                            hint="connect `views` + `texture` (our renders) or `synthetic` images")
        sd = load_sd_components(p.weights, ctx.device)
        real_px = prepare_images(real, p.resolution, p.crops_per_image, gen)
        parts = [prepare_images(synthetic_images, p.resolution, p.crops_per_image, gen)] if synthetic_images else []
        if renders is not None:
            parts.append(renders)
        real_lat = encode_images(sd["vae"], real_px)
        synth_lat = encode_images(sd["vae"], torch.cat(parts))
        with ctx.progress(total=p.steps, desc="domain shifters") as bar:
            shifter, losses = train_domain_shifter(
                sd["unet"], sd["scheduler"], real_lat, synth_lat, sd["context"], rank=p.rank, embed_dim=p.embed_dim,
                steps=p.steps, lr=p.lr, batch_size=p.batch_size, generator=gen, progress=_progress_callback(bar))
        shifter.detach()
        if p.synthetic_blocks is not None:
            bad = [b for b in p.synthetic_blocks if not 0 <= b < shifter.num_blocks]
            if bad:
                raise UserError(f"synthetic_blocks {bad} out of range", param="synthetic_blocks",
                                hint=f"this UNet has transformer blocks 0..{shifter.num_blocks - 1}")
            schedule = DomainSchedule(tuple(sorted(set(p.synthetic_blocks))), p.synthetic_t_min)
        else:
            schedule = default_schedule(shifter.num_blocks, t_min=p.synthetic_t_min)
        tail = losses[-max(1, len(losses) // 10):]
        meta = shifter.meta() | {
            "schedule": schedule.to_meta(),
            "base_model": Path(p.weights).name,
            "stage1": {"steps": p.steps, "lr": p.lr, "batch_size": p.batch_size, "resolution": p.resolution,
                       "real_images": len(real), "real_crops": int(real_lat.shape[0]),
                       "synthetic_images": int(synth_lat.shape[0]), "first_loss": losses[0],
                       "final_loss": sum(tail) / len(tail)},
        }
        return DomainAdapter(shifter=shifter.tensors(), control={}, meta=meta)


# ---------------------------------------------------------------- stage 2


@register
class TrainControl(_TrainingNode):
    """Realiz3D stage 2: depth/normal control pathway (geometry encoder + LoRA) with the domain shifters frozen."""

    name = "train.control"
    version = 2  # 2: an explicit `seed` goes through ctx.seed like every node's (was used as is)

    class Params(_TrainingParams):
        reassign_prob: float = Field(0.5, ge=0.0, le=1.0, description="probability that the blocks before the "
                                                                      "cutoff of a real batch run in synthetic mode")

    def run(self, ctx: Context, adapter: DomainAdapter, views: Views, texture: Keyed[TextureMap],
            references: Keyed[Reference] | None = None) -> DomainAdapter:
        p = self.params
        gen = ctx.generator
        sd = load_sd_components(p.weights, ctx.device)
        shifter = DomainShifter.from_adapter(adapter)
        param = next(sd["unet"].parameters())
        shifter.to(device=param.device, dtype=param.dtype).attach(sd["unet"])
        renders = synthetic_renders(views, texture, p.resolution)
        assert renders is not None
        geometry = geometry_from_views(views.depth, views.normal, p.resolution).to(param)
        synth_lat = encode_images(sd["vae"], renders)
        real = real_images(references, p.real_dir)
        real_lat = None
        if real:
            real_lat = encode_images(sd["vae"], prepare_images(real, p.resolution, p.crops_per_image, gen))
        with ctx.progress(total=p.steps, desc="control pathway") as bar:
            result = train_control(
                sd["unet"], sd["scheduler"], shifter, synth_lat, geometry, real_lat, sd["context"], rank=p.rank,
                steps=p.steps, lr=p.lr, batch_size=p.batch_size, reassign_prob=p.reassign_prob,
                downscale=sd["downscale"], generator=gen, progress=_progress_callback(bar))
        control = result.pathway.state()
        result.pathway.remove()
        shifter.detach()
        tail = result.synthetic_losses[-max(1, p.steps // 10):]
        meta = dict(adapter.meta) | {
            "control": {"kind": "geometry_encoder+lora", "adapter_name": CONTROL_ADAPTER_NAME, "rank": p.rank,
                        "targets": list(LORA_TARGETS), "geometry": "depth+normal",
                        "geometry_channels": GEOMETRY_CHANNELS, "downscale": sd["downscale"]},
            "stage2": {"steps": p.steps, "lr": p.lr, "batch_size": p.batch_size, "resolution": p.resolution,
                       "reassign_prob": p.reassign_prob, "synthetic_views": int(synth_lat.shape[0]),
                       "real_images": len(real), "first_loss": result.synthetic_losses[0],
                       "final_loss": sum(tail) / len(tail)},
        }
        return DomainAdapter(shifter=dict(adapter.shifter), control=control, meta=meta)


__all__ = ["TrainControl", "TrainDomainShifter", "encode_images", "load_sd_components", "render_views"]
