"""Distillation nodes: `distill.semantic`, `distill.pixel` (and, re-exported, `superres.anchored`, whose
node lives in `superres_node`).

All are mapped per instance (`map_over`): each instance is its own
cached item, so editing one instance's reference re-runs only that instance.

Guidance: `guidance_bank` (optional, the union of all references) is the
unconditional bank for classifier-free guidance of the closed-form prior.
When it is not connected, the unconditional score is the instance's own bank,
so `guidance_scale` has no effect (ε_u = ε_c); it is optional precisely so
that editing one instance's reference does not invalidate every instance.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphflow import Context, Keyed, Node, Resources, UserError, register
from nodes.components.priors import ScorePrior, ScorePriorConfig, score_prior
from nodes.measures.colour import INVENTED_SHARE_LIMIT, invented_colour_share
from nodes.measures.distances import patch_sliced_wasserstein, structure_target_over
from nodes.measures.seams import seam_ratio_measure
from nodes.render.uv_raster import uv_island_mask
from nodes.types import DomainAdapter, Instance, Reference, Scene, SwatchMaterial, TextureMap, Views, as_reference

from .common import (SEAM_RATIO_LIMIT, SELECTION_MEASURE, PriorName, check_noise_range_and_stride,
                     reference_images, with_weights)
from .loop import LoopSettings, distill_texture
from .stretch import tiled_baseline
from .superres_node import SuperResAnchored, SuperResParams, detail_transfer, keep_best_upscale
from .texture_param import InstanceViews, PyramidTexture, seen_texels, select_instance_views
from .world_scale import (
    WORLD_SCALE_KEYS,
    LevelRenderer,
    ideal_atlas,
    render_level,
    selection_closeups,
    swatch_at_view_scale,
)

__all__ = [  # the superres node and its helpers are re-exported: callers import them from here
    "PriorName", "SEAM_RATIO_LIMIT", "SELECTION_MEASURE", "DistillParams", "DistillPixel", "DistillSemantic",
    "PixelParams", "SuperResAnchored", "SuperResParams", "check_noise_range_and_stride", "detail_transfer",
    "keep_best_upscale", "reference_images", "run_distillation", "with_weights",
]


class DistillParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prior: PriorName = Field("closed_form", description="score prior: closed-form patch prior (CPU) or Stable Diffusion")
    method: Literal["sds", "vsd", "tbsd"] = Field("vsd", description="distillation gradient (DESIGN.md §4)")
    steps: int = Field(100, ge=1, le=100_000, description="optimisation steps per instance")
    lr: float = Field(0.01, gt=0, le=10, description="Adam learning rate of the texture pyramid")
    guidance_scale: float = Field(1.0, ge=0, le=100, description="classifier-free guidance scale")
    t_min: float = Field(0.02, gt=0, lt=1, description="lowest noise level")
    t_max: float = Field(0.98, gt=0, lt=1, description="highest noise level")
    schedule: Literal["decreasing", "anneal", "random"] = Field("decreasing", description="timestep schedule")
    texture_size: int = Field(128, ge=8, le=4096, description="atlas size in texels (square)")
    texture_levels: int = Field(4, ge=1, le=8, description="levels of the Laplacian-pyramid texture parameters")
    seed: int = Field(0, ge=0, description="seed of noise, view and bank sampling (the run's: ctx.seed)")
    patch_size: int = Field(5, ge=2, le=16, description="closed-form prior patch size (pixels)")
    pyramid_levels: int = Field(3, ge=1, le=6, description="closed-form prior Gaussian-pyramid levels")
    bank_size: int = Field(1024, ge=16, le=200_000, description="patches kept per bank level (random subset)")
    stride: int = Field(3, ge=1, le=16, description="query patch stride of the closed-form prior (<= patch_size)")
    views_per_step: int = Field(2, ge=1, le=256, description="views rendered per step")
    init: Literal["mean", "tiled", "best"] = Field(
        "best", description="starting texture when there is no init input: 'mean' (the reference's mean colour, "
        "schedule from t_max), 'tiled' (the reference stretched once over the instance's UV island, schedule from "
        "tiled_t_max so its layout survives), or 'best': run 'tiled', 'tiled' with patch_size + 2 and 'mean', and "
        "keep the one whose renders are closest to the reference (patch sliced-Wasserstein over 5 pyramid levels, "
        "so layout at 1/16 scale counts as well as texture; triples the cost)")
    tiled_t_max: float = Field(0.6, gt=0, lt=1, description="highest noise level when starting from the tiled reference")
    init_t_max: float = Field(0.98, gt=0, lt=1, description="highest noise level when an `init` texture is given "
                              "(e.g. texture.project's): low enough to keep its layout")
    weights: str | None = Field(None, description="stable_diffusion: local diffusers dir or cached hub id")
    domain: Literal["real", "synthetic"] | None = Field(None, description="stable_diffusion: domain mode, if supported")
    bypass: bool = Field(False, description="pass the start through unchanged (the stage is off)")

    @model_validator(mode="after")
    def _check(self) -> DistillParams:
        check_noise_range_and_stride(self)
        if self.texture_size < 2 ** (self.texture_levels - 1):
            raise ValueError(f"texture_size {self.texture_size} is too small for texture_levels {self.texture_levels}")
        return self


def build_score_prior(params: DistillParams, ctx: Context, reference: Reference,
                      guidance_bank: Keyed[Reference] | None, seed: int, finest_only: bool = False,
                      t_max: float | None = None, domain_adapter: DomainAdapter | None = None) -> ScorePrior:
    """The prior `params.prior` names, from the registry (`nodes.components.priors`), for one instance."""
    union = None
    if guidance_bank is not None:
        union = [img.float() for ref in guidance_bank.values() for img in ref.images]
    config = ScorePriorConfig(
        instance=ctx.item or "instance", reference=reference, images=reference_images(reference, ctx),
        device=ctx.device, seed=seed, t_range=(params.t_min, t_max or params.t_max), guidance_images=union,
        finest_only=finest_only, patch_size=params.patch_size, levels=params.pyramid_levels,
        bank_size=params.bank_size, stride=params.stride, weights=params.weights, domain=params.domain,
        domain_adapter=domain_adapter,
    )
    return score_prior(params.prior, config)


def _score(texture: PyramidTexture, views: InstanceViews, images: list[torch.Tensor]) -> float:
    """How far a candidate's renders are from the reference (patch sliced-Wasserstein, seeded).

    Five pyramid levels rather than the metric's default three: with three, a start from the mean
    colour that matches local statistics could beat a start that kept the reference's layout (the
    demo rug lost its medallion that way); patches at 1/16 scale see the layout.
    """
    with torch.no_grad():
        renders = texture.render(views.uv, views.mask).clamp(0, 1)
    return patch_sliced_wasserstein(renders, views.mask, images, seed=0, levels=5)


def reference_for_ideal(reference: Reference, images: list[torch.Tensor]) -> Reference:
    """The reference with its original images (the prior's copy holds the swatch at the views' scale)."""
    return dataclasses.replace(reference, images=tuple(images))


@dataclass
class Scoring:
    """How a stage's candidates are compared: a distance (lower is closer to the swatch) and, for
    world-scale textures, a seam check against the kept input (a refinement may not open seams wider than
    `max(SEAM_RATIO_LIMIT, seams(start))`). The check runs only for a candidate that beats the kept input:
    usually none does, and the seam geometry is then never built."""

    distance: Callable[[PyramidTexture], float]
    seams: Callable[[torch.Tensor], float] | None = None
    start: torch.Tensor | None = None  # the image whose seams set the limit
    # share of texels whose colour the swatch never has (`nodes.measures.colour.invented_colour_share`); None: unchecked
    invented: Callable[[torch.Tensor], float] | None = None
    # each measure's limit, measured on `start` once per stage rather than once per candidate
    _limits: dict[str, float] = field(default_factory=dict, repr=False)

    def _limit(self, name: str, measure: Callable[[torch.Tensor], float], floor: float) -> float:
        if name not in self._limits:
            self._limits[name] = floor if self.start is None else max(floor, measure(self.start))
        return self._limits[name]

    def accepts(self, image: torch.Tensor) -> bool:
        if self.invented is not None and self.invented(image) > self._limit("invented", self.invented,
                                                                             INVENTED_SHARE_LIMIT):
            return False
        if self.seams is None:
            return True
        return self.seams(image) <= self._limit("seams", self.seams, SEAM_RATIO_LIMIT)


def _views_or_fallback(ctx: Context, views: Views, name: str, init: TextureMap | None
                       ) -> InstanceViews | TextureMap:
    """The instance's views, or (issue 14) its start texture when no view shows it and there is one."""
    try:
        return select_instance_views(views, name)
    except ValueError as err:
        if init is None or name not in views.instance_names:
            raise UserError(str(err), node=ctx.node_id, item=ctx.item,
                            hint="give views.sample more cameras (params.count) or a higher resolution") from None
        # An instance no view shows (a bulb in a shade, a screw) can still be textured: it keeps its
        # start (texture.project's swatch at real size) rather than failing the whole run.
        note = "not visible in any view: projected only"
        ctx.log.warning("%s: instance '%s' is %s (%s)", ctx.node_id, name, note, err)
        ctx.note(note)
        return TextureMap(image=init.image.clone(), mask=init.mask.clone(), info={**dict(init.info), "note": note},
                          ideal=init.ideal, height=init.height, roughness=init.roughness, scale=init.scale)


def _candidates(params: DistillParams, init: TextureMap | None, images: list[torch.Tensor],
                atlas_mask: torch.Tensor) -> list[tuple[str, torch.Tensor | None, float]]:
    """Candidate starts: (label, start image, t_max)."""
    if init is not None:
        # From a given start the schedule begins at `init_t_max`, a noise level that keeps its layout.
        t_start = max(params.t_min, min(params.t_max, params.init_t_max))
        candidates = [("input", init.image.float(), t_start)]
        if params.init == "best" and init.scale is None:
            candidates.append((f"input_p{params.patch_size + 2}", init.image.float(), t_start))
        return candidates
    tiled_image = tiled_baseline(images[0], atlas_mask)
    tiled_t_max = max(params.t_min, min(params.t_max, params.tiled_t_max))
    tiled = ("tiled", tiled_image, tiled_t_max)
    mean = ("mean", None, params.t_max)
    # 'best' also tries the tiled start with patches 2 px larger (coarser structure: stripes, grids).
    larger = (f"tiled_p{params.patch_size + 2}", tiled_image, tiled_t_max)
    return {"mean": [mean], "tiled": [tiled], "best": [tiled, larger, mean]}[params.init]


def _world_scale(params: DistillParams, settings: LoopSettings, scene: Scene, instance: Instance,
                 reference: Reference, images: list[torch.Tensor], init: TextureMap, views: InstanceViews
                 ) -> tuple[LoopSettings, Reference, Scoring]:
    """A world-scale start (texture.project): views read the mip level of their pixel size, the prior's bank
    is the swatch at the views' scale, candidates are scored against the ideal's renders (the swatch
    repeated at its real size), and may not open seams wider than the start's."""
    level = render_level(views, params.texture_size)
    settings = dataclasses.replace(settings, render_level=level)
    if params.prior == "closed_form":  # the patch bank at the views' scale (an SD prior reads the photo)
        reference = dataclasses.replace(reference, images=(swatch_at_view_scale(reference, init, views),))
    ideal = ideal_atlas(scene, instance, reference_for_ideal(reference, images), init)
    # Candidates are judged where the acceptance measure looks: the graph's views (layout) and close-ups
    # at one pixel per texel (the pattern's shape), each at its own mip level, in one measure over both.
    view_sets = [(views, level)]
    closeups = selection_closeups(scene, instance, init.scale.texels_per_metre)
    if closeups is not None:
        view_sets.append((closeups, 0))
    size = tuple(init.image.shape[-2:])
    renderers = [LevelRenderer(v, lv, *size) for v, lv in view_sets]
    with torch.no_grad():  # candidates render on the same views: the ideal's side of the measure is built once
        target = structure_target_over([(v.mask, render(ideal).clamp(0, 1))
                                        for (v, _), render in zip(view_sets, renderers, strict=True)],
                                       **SELECTION_MEASURE)
    faces = scene.faces[instance.face_mask]

    seams = seam_ratio_measure(scene.positions, faces, scene.uvs)

    def distance(texture: PyramidTexture) -> float:
        with torch.no_grad():
            image = texture.image()
            return target([render(image).clamp(0, 1) for render in renderers])

    return settings, reference, Scoring(distance, seams, init.image, colour_check(images[0], init, size))


def colour_check(swatch: torch.Tensor, texture: TextureMap, size: tuple[int, ...]
                 ) -> Callable[[torch.Tensor], float]:
    """The share of a world-scale atlas's island texels whose colour the swatch never has (ΔE76 > 3 from
    every colour of the swatch at its own resolution and at the atlas's density): what a stage may not add
    (issue 25 item 3; isolated-outlier counts miss blotches, and mean colour averages them away)."""
    assert texture.scale is not None, "colour_check is for world-scale textures"
    texels_per_pixel = texture.scale.texels_per_metre * texture.scale.swatch_size_m[0] / swatch.shape[-1]
    mask = texture.mask.bool() if tuple(texture.mask.shape) == tuple(size) else None
    return lambda image: invented_colour_share(image.detach(), mask, swatch, texels_per_pixel=texels_per_pixel)


def _kept_input(params: DistillParams, settings: LoopSettings, init: TextureMap, atlas_mask: torch.Tensor,
                seen: torch.Tensor | None, scoring: Scoring, info: dict[str, Any]) -> TextureMap:
    """The unchanged input as a candidate: a refinement stage must not return something further from the
    reference than what it was given, so the input competes with the refined candidates under the same score."""
    kept = PyramidTexture(params.texture_size, params.texture_levels, init=init.image.float(),
                          render_level=settings.render_level)
    result = kept.to_texture_map(atlas_mask, seen, {"stage": info["stage"], "prior": params.prior,
                                                    "instance": info["instance"], "init": "input_kept", "steps": 0})
    result.info["sw_to_reference"] = scoring.distance(kept)
    return result


def _candidate_params(params: DistillParams, label: str) -> DistillParams:
    """The params of one candidate: the `_p` candidates use patches 2 px larger (and a stride 1 px larger)."""
    if label.startswith(("tiled_p", "input_p")):
        return params.model_copy(update={"patch_size": params.patch_size + 2, "stride": params.stride + 1})
    return params


def _with_run_info(best: TextureMap, scores: dict[str, float], init: TextureMap | None) -> TextureMap:
    """The chosen texture with every candidate's score in its info and the start's world scale (texture.project's
    `scale`, its info keys kept for diagnostics)."""
    if len(scores) > 1:
        best.info["init_scores"] = scores
    if init is not None:
        best.info.update({k: init.info[k] for k in WORLD_SCALE_KEYS if k in init.info})
        if init.ideal is not None and tuple(init.ideal.shape) == tuple(best.image.shape):
            best = dataclasses.replace(best, ideal=init.ideal)  # the next stage scores against it too
        # The material's other maps are laid by texture.project; distillation refines colour only.
        best = dataclasses.replace(best, height=init.height, roughness=init.roughness, scale=init.scale)
    return best


def run_distillation(params: DistillParams, ctx: Context, scene: Scene, instance: Instance, reference: Reference,
                     views: Views, guidance_bank: Keyed[Reference] | None, init: TextureMap | None,
                     stage: str, domain_adapter: Any = None) -> TextureMap:

    name = instance.name or (ctx.item or "")
    images = reference_images(reference, ctx)
    instance_views = _views_or_fallback(ctx, views, name, init)
    if isinstance(instance_views, TextureMap):
        return instance_views
    if init is not None:
        if init.image.dim() != 3 or init.image.shape[0] != 3:
            raise UserError(f"init texture has shape {tuple(init.image.shape)}, expected [3, H, W]",
                            node=ctx.node_id, item=ctx.item)
        # The atlas is the start's: its size follows the graph's texel density (texture.project).
        size = int(init.image.shape[-1])
        params = params.model_copy(update={"texture_size": size,
                                           "texture_levels": min(params.texture_levels, size.bit_length() - 1)})
        atlas_mask = init.mask.bool()
    else:
        atlas_mask = uv_island_mask(scene.uvs, scene.faces[instance.face_mask], params.texture_size)
    settings = LoopSettings.from_params(params)
    seen: torch.Tensor | None = seen_texels(instance_views.uv, instance_views.mask, params.texture_size)
    scoring = Scoring(lambda texture: _score(texture, instance_views, images))
    if init is not None and init.scale is not None:
        settings, reference, scoring = _world_scale(params, settings, scene, instance, reference, images, init,
                                                    instance_views)
        seen = None  # texels no view sees keep the start instead of being filled from their neighbours
    candidates = _candidates(params, init, images, atlas_mask)
    best: TextureMap | None = None
    scores: dict[str, float] = {}
    if init is not None and params.init == "best":
        best = _kept_input(params, settings, init, atlas_mask, seen, scoring, {"stage": stage, "instance": name})
        scores["input_kept"] = best.info["sw_to_reference"]
    fill = torch.stack([img.mean((1, 2)) for img in images]).mean(0)
    with ctx.progress(total=params.steps * len(candidates), desc=stage) as bar:
        for label, start_image, t_max in candidates:
            prior = build_score_prior(_candidate_params(params, label), ctx, reference, guidance_bank, ctx.seed,
                                      finest_only=(stage == "pixel"), t_max=t_max, domain_adapter=domain_adapter)
            texture, info = distill_texture(
                prior, instance_views, atlas_mask, dataclasses.replace(settings, t_max=t_max), ctx.seed, name,
                ctx.node_id, init=start_image, fill=fill, progress=bar,
                info={"stage": stage, "prior": params.prior, "instance": name, "init": label, "t_max": t_max},
            )
            result = texture.to_texture_map(atlas_mask, seen, info)
            scores[label] = result.info["sw_to_reference"] = scoring.distance(texture)
            if best is None or (scores[label] < best.info["sw_to_reference"] and scoring.accepts(result.image)):
                best = result
    assert best is not None
    return _with_run_info(best, scores, init)


BYPASS_NOTE = "bypassed: the start passes through unchanged (params.bypass)"


def bypassed(ctx: Context, init: TextureMap | None, stage: str) -> TextureMap:
    """The start unchanged, for a stage that is off (`params.bypass`): no render, no prior, ~0 s.
    Its info says so (`init` "bypassed") so a report or bench can tell an off stage from one that kept its input."""
    if init is None:
        raise UserError(f"{ctx.node_id}: params.bypass passes the 'init' input through, but none is connected",
                        node=ctx.node_id, item=ctx.item,
                        hint="connect init (e.g. texture.project's output) or set params.bypass=false")
    ctx.note(BYPASS_NOTE)
    info = {**dict(init.info), "stage": stage, "init": "bypassed", "steps": 0, "note": BYPASS_NOTE}
    return dataclasses.replace(init, info=info)


class DistillStage(Node):
    """What the distillation stages share: mapped per instance, two CPUs, `run_distillation` with the
    `weights` port overriding `params.weights`, the stage named by the node ('distill.pixel': 'pixel').
    Each stage declares its own ports in `run`."""

    map_over = ("instances", "references", "init")
    reads_only = ("scene", "views")  # shared by every item (all views: large): not copied per item
    resources = Resources(num_cpus=2, memory_mb=1024)

    def distill(self, ctx: Context, scene: Scene, instance: Instance, reference: Reference | SwatchMaterial,
                views: Views, init: TextureMap | None, guidance_bank: Keyed[Reference] | None, weights: Path | None,
                domain_adapter: DomainAdapter | None = None) -> TextureMap:
        stage = self.name.removeprefix("distill.")
        if self.params.bypass:
            return bypassed(ctx, init, stage)
        return run_distillation(with_weights(self.params, weights), ctx, scene, instance, as_reference(reference),
                                views, guidance_bank, init, stage, domain_adapter=domain_adapter)


@register
class DistillSemantic(DistillStage):
    """Instance-level score distillation of a texture from the bound references (CustomTex's semantic stage)."""

    name = "distill.semantic"
    version = 7  # 5: a candidate with invented colours is refused (issue 25 item 3); carries height/roughness
    # 6: carries the start's WorldScale (`TextureMap.scale`, issue 24); 7: params.bypass (issue 25 item 5)
    Params = DistillParams

    def run(self, ctx: Context, scene: Scene, instances: Instance, references: Reference | SwatchMaterial,
            views: Views, init: TextureMap | None = None, guidance_bank: Keyed[Reference] | None = None,
            weights: Path | None = None, domain_adapter: DomainAdapter | None = None) -> TextureMap:
        return self.distill(ctx, scene, instances, references, views, init, guidance_bank, weights, domain_adapter)


class PixelParams(DistillParams):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(80, ge=1, le=100_000, description="optimisation steps per instance")
    lr: float = Field(0.002, gt=0, le=10, description="Adam learning rate of the texture pyramid")
    t_min: float = Field(0.02, gt=0, lt=1, description="lowest noise level")
    t_max: float = Field(0.3, gt=0, lt=1, description="highest noise level (low noise: detail only)")
    pyramid_levels: int = Field(1, ge=1, le=6, description="ignored: the pixel stage uses the finest level only")
    init: Literal["mean", "tiled", "best"] = Field(
        "best", description="'best': also run with patch_size + 2 and keep whichever of the two results and the "
        "unchanged input is closest to the reference (patch sliced-Wasserstein); else one run")


@register
class DistillPixel(DistillStage):
    """Detail and sharpness at the finest scale from the semantic stage's texture (CustomTex's pixel stage)."""

    name = "distill.pixel"
    version = 6  # 4: a candidate with invented colours is refused (issue 25 item 3); carries height/roughness
    # 5: carries the start's WorldScale (`TextureMap.scale`, issue 24); 6: params.bypass (issue 25 item 5)
    Params = PixelParams

    def run(self, ctx: Context, scene: Scene, instances: Instance, references: Reference | SwatchMaterial,
            views: Views, init: TextureMap, guidance_bank: Keyed[Reference] | None = None,
            weights: Path | None = None) -> TextureMap:
        return self.distill(ctx, scene, instances, references, views, init, guidance_bank, weights)
