"""`superres.anchored`: ×2/×4 refinement of a texture atlas by SDS with a super-resolution prior anchored on
the input (the optimisation is `superres.anchored_superres`). A world-scale texture (one with a
`WorldScale`) starts from the swatch laid at the output's density plus what earlier stages changed (detail
transfer), draws its prior's pairs from the swatch at the output's density, and keeps the refined atlas only
when it is closer to the swatch; its scale leaves `factor` times finer."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphflow import Context, Node, Resources, UserError, register
from nodes.components.priors import SuperResPriorConfig, superres_prior
from nodes.measures.colour import INVENTED_SHARE_LIMIT, invented_colour_share, isolated_outliers
from nodes.measures.distances import structure_target
from nodes.measures.seams import seam_ratio_measure
from nodes.render.uv_raster import fill_atlas_gutter
from nodes.texture.world import project, swatch_at
from nodes.types import Instance, Reference, Scene, SwatchMaterial, TextureMap, as_reference

from .common import (SEAM_RATIO_LIMIT, SELECTION_MEASURE, PriorName, check_noise_range_and_stride,
                     reference_images, with_weights)
from .loop import with_one_restart
from .superres import SuperResSettings, anchored_superres, output_coverage, superres_info, upsampled_map


class SuperResParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prior: PriorName = Field("closed_form", description="super-resolution prior")
    factor: Literal[2, 4] = Field(2, description="upscaling factor of the atlas")
    steps: int = Field(40, ge=1, le=100_000)
    lr: float = Field(0.01, gt=0, le=10)
    t_min: float = Field(0.05, gt=0, lt=1)
    t_max: float = Field(0.5, gt=0, lt=1)
    schedule: Literal["decreasing", "anneal", "random"] = "decreasing"
    noise_level: float = Field(0.1, ge=0, le=1, description="noise augmentation of the anchor condition")
    crop: int = Field(64, ge=8, le=1024, description="atlas crop size per sample")
    crops_per_step: int = Field(4, ge=1, le=64)
    patch_size: int = Field(5, ge=2, le=16)
    bank_size: int = Field(2048, ge=16, le=200_000)
    stride: int = Field(2, ge=1, le=16)
    seed: int = Field(0, ge=0, description="seed of crops, noise and bank sampling (the run's: ctx.seed)")
    weights: str | None = Field(None, description="stable_diffusion: x4 upscaler weights (local dir or hub id)")

    @model_validator(mode="after")
    def _check(self) -> SuperResParams:
        check_noise_range_and_stride(self)
        return self


def detail_transfer(scene: Scene, instance: Instance, reference: Reference, texture: TextureMap,
                    factor: int) -> torch.Tensor:
    """`P_hi + up(x - P_lo)`: the swatch projected at `factor` times the density, plus the difference between
    the input `x` and the projection at its own density (what distillation changed), clamped. The same charts
    go triplanar at both densities (`WorldScale.scaled` counts the small-chart threshold in base texels)."""
    scale = texture.scale
    if scale is None:
        raise ValueError("detail_transfer needs a world-scale texture (one with a `scale`, from texture.project)")
    size = int(texture.image.shape[-1])
    change = texture.image.float() - project(scene, instance, reference, scale, size).image
    up = F.interpolate(change[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]
    return (project(scene, instance, reference, scale.scaled(factor), size * factor).image + up).clamp(0, 1)


def keep_best_upscale(out: torch.Tensor, out_mask: torch.Tensor, image: torch.Tensor, start: torch.Tensor | None,
                      swatch: torch.Tensor, factor: int, info: dict[str, Any],
                      seams: Callable[[torch.Tensor], float] | None = None,
                      palette: torch.Tensor | None = None) -> torch.Tensor:
    """The refined atlas, or its plain alternative when refining did not bring it closer to the swatch.

    The alternative is the detail transfer the refinement started from when there is one, else the input
    upsampled. Compared in atlas space with the swatch's patches at the output's density (structure
    distance over the instance's texels); the refined atlas must also add no isolated outliers and open
    no seam wider than the alternative's (`seams`, when the scene is known), and, given the swatch's own
    `palette` image, add no colour the swatch never has beyond 0.1 % of texels (or the alternative's share):
    super-resolution may sharpen, never add speckle, blotches, seams or drift.
    """
    plain_name = "detail_transfer" if start is not None else "upsampled"
    plain = start if start is not None else F.interpolate(image[None], scale_factor=factor, mode="bicubic",
                                                          align_corners=False)[0].clamp(0, 1)
    mask, target = out_mask[None, None].float(), swatch[None]
    to_swatch = structure_target(mask, target, torch.ones_like(target[:, :1]), **SELECTION_MEASURE)

    def distance(candidate: torch.Tensor) -> float:
        return to_swatch(candidate[None])

    scores = {"refined": distance(out), plain_name: distance(plain)}
    clean = isolated_outliers(out, out_mask) <= isolated_outliers(plain, out_mask) + 1e-4
    if seams is not None:
        clean = clean and seams(out) <= max(SEAM_RATIO_LIMIT, seams(plain))
    if palette is not None and clean:
        colours = torch.cat([palette.reshape(3, -1), swatch.reshape(3, -1)], 1)[:, :, None]
        invented = {key: invented_colour_share(value, out_mask.bool(), colours) for key, value in
                    (("refined", out), (plain_name, plain))}
        info["invented_colours"] = invented
        clean = invented["refined"] <= max(INVENTED_SHARE_LIMIT, invented[plain_name])
    chosen = "refined" if clean and scores["refined"] < scores[plain_name] else plain_name
    info.update(superres_scores=scores, superres_choice=chosen)
    return out if chosen == "refined" else plain


@register
class SuperResAnchored(Node):
    """×2/×4 texture refinement by SDS with a super-resolution prior anchored on the input texture."""

    name = "superres.anchored"
    version = 6  # 5: keep-best also refuses invented colours (issue 25 item 3)
    # 6: the output carries the input's WorldScale, `factor` times finer (`TextureMap.scale`, issue 24)
    Params = SuperResParams
    map_over = ("texture", "references", "instances")
    reads_only = ("scene",)  # shared by every item: not copied per item
    resources = Resources(num_cpus=2, memory_mb=1024)

    def run(self, ctx: Context, texture: TextureMap, references: Reference | SwatchMaterial,
            weights: Path | None = None, scene: Scene | None = None,
            instances: Instance | None = None) -> TextureMap:


        references = as_reference(references)
        p = with_weights(self.params, weights)
        scale = texture.scale
        images = reference_images(references, ctx)
        if scale is not None:  # (high, low) pairs from the swatch at the output's density, not at its own pixels
            images = [swatch_at(references, scale, scale.texels_per_metre * p.factor, min_side=64)]
        image = texture.image.float()
        if image.dim() != 3 or image.shape[0] != 3 or not bool(torch.isfinite(image).all()):
            raise UserError(f"input texture is not a finite [3, H, W] image (shape {tuple(image.shape)})",
                            node=ctx.node_id, item=ctx.item)
        prior = superres_prior(p.prior, SuperResPriorConfig(
            images=images, factor=p.factor, device=ctx.device, seed=ctx.seed, patch_size=p.patch_size,
            bank_size=p.bank_size, stride=p.stride, weights=p.weights))
        settings = SuperResSettings.from_params(p)
        info: dict[str, Any] = {"stage": "superres", "prior": p.prior, "factor": p.factor, "restarted": False}
        start, seams = _world_scale_start(scene, instances, references, texture, p.factor)
        coverage = output_coverage(texture.mask.bool(), p.factor, scene, instances)
        with ctx.progress(total=p.steps, desc="superres") as bar:
            def attempt(lr: float, index: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
                return anchored_superres(prior, image, texture.mask, settings, torch.Generator().manual_seed(ctx.seed),
                                         on_step=lambda step, loss: bar.update(1, loss=f"{loss:.4g}"), lr=lr,
                                         start=start, out_mask=coverage)

            (out, out_mask, losses), lr = with_one_restart(attempt, p.lr, node_id=ctx.node_id, item=ctx.item,
                                                           what="the texture", info=info, hint="lower params.lr")
        if bool(out_mask.any()):
            out = fill_atlas_gutter(out, out_mask)
        info.update(steps=p.steps, lr=lr, final_loss=losses[-1] if losses else None)
        if scale is not None:
            out = keep_best_upscale(out, out_mask, image, start, images[0], p.factor, info, seams,
                                    palette=references.images[0].float())
            info["texels_per_metre"] = scale.texels_per_metre * p.factor
        info.update(superres_info(out, image, out_mask, texture.mask.bool(), images[0], p.factor))
        return TextureMap(image=out.contiguous(), mask=out_mask, info={**dict(texture.info), **info,
                                                                       "input_size": int(image.shape[-1])},
                          height=upsampled_map(texture.height, p.factor, out_mask),
                          roughness=upsampled_map(texture.roughness, p.factor, out_mask),
                          scale=None if scale is None else scale.scaled(p.factor))


def _world_scale_start(scene: Scene | None, instance: Instance | None, reference: Reference, texture: TextureMap,
                       factor: int) -> tuple[torch.Tensor | None, Callable[[torch.Tensor], float] | None]:
    """With the scene, a world-scale texture starts from the swatch laid at the output's density plus what the
    earlier stages changed (`detail_transfer`: the swatch's own fine detail, anchored), and the refined atlas
    may open no seam wider than it (the seam measure); else (None, None)."""
    if scene is None or instance is None or texture.scale is None:
        return None, None
    start = detail_transfer(scene, instance, reference, texture, factor)
    return start, seam_ratio_measure(scene.positions, scene.faces[instance.face_mask], scene.uvs)
