"""The swatch at its real-world scale: one home for what the stages after `texture.project` need of it.

A texture laid by `texture.project` carries a `WorldScale` (`TextureMap.scale`, passed on by distillation,
super-resolution and brdf): the density, the swatch's size in metres, its mode and repeat, and the
projection settings. From it and the scene, instance and reference, the plain functions here give the
instance's charts, the atlas side, the swatch resampled to a density, the swatch laid again on the atlas
(at another density or phase), and the ideal texture (the swatch repeated at its real size, unblended, at
`IDEAL_PHASE`): distillation, super-resolution, the metrics and the benches call these rather than
rebuilding settings from a texture's `info` (which is for diagnostics only).
"""
from __future__ import annotations

import dataclasses

import torch

from nodes.types import Instance, ProjectionSettings, Reference, Scene, SwatchMaterial, TextureMap, WorldScale

from .charts import Charts, build_charts
from .project import IDEAL_PHASE, atlas_side, project_instance, wanted_side
from .swatch import density_size, resampled

__all__ = [
    "IDEAL_PHASE", "ProjectionSettings", "WorldScale", "atlas_side", "ideal_texture", "instance_charts",
    "phase_of_fraction", "project", "settings_at", "swatch_at", "wanted_side",
]


def instance_charts(scene: Scene, instance: Instance) -> Charts:
    """The instance's UV charts with their maps to metres and their seams (`nodes.texture.charts`)."""
    faces = scene.faces[instance.face_mask].numpy()
    return build_charts(scene.positions.numpy(), scene.normals.numpy(), scene.uvs.numpy(), faces)


def settings_at(scale: WorldScale, side: int, *, phase: tuple[float, float] | None = None,
                blend: bool = True) -> ProjectionSettings:
    """The scale's projection settings pinned to an atlas of `side` texels (at `phase` metres when given;
    `blend=False`: no cross-fade across seams)."""
    settings = dataclasses.replace(scale.projection, min_size=side, max_size=side)
    if phase is not None:
        settings = dataclasses.replace(settings, phase=phase)
    return settings if blend else dataclasses.replace(settings, blend_width=0.0)


def project(scene: Scene, instance: Instance, reference: Reference | SwatchMaterial, scale: WorldScale,
            side: int, *, phase: tuple[float, float] | None = None, blend: bool = True) -> TextureMap:
    """The reference laid again on the instance's atlas of `side` texels at `scale` (its density, charts'
    triplanar choice and seam blend), at `phase` metres when given."""
    return project_instance(scene, instance.face_mask, reference, settings_at(scale, side, phase=phase, blend=blend))


def ideal_texture(scene: Scene, instance: Instance, reference: Reference | SwatchMaterial, scale: WorldScale,
                  side: int, phase: tuple[float, float] = IDEAL_PHASE) -> torch.Tensor:
    """The swatch repeated at its real size on the atlas, unblended, at `phase` (by default `IDEAL_PHASE`,
    the one texture.project's `TextureMap.ideal` lies at): what refined textures are scored against."""
    return project(scene, instance, reference, scale, side, phase=phase, blend=False).image


def swatch_at(reference: Reference, scale: WorldScale, texels_per_metre: float | None = None,
              min_side: int = 0, min_repeats: int = 1) -> torch.Tensor:
    """The first reference image spanning the scale's swatch size (width and height) at `texels_per_metre`
    (default the scale's own), clamped to [0, 1]; a `tile` swatch is repeated to at least `min_side` pixels
    and `min_repeats` copies each way (so a patch bank holds the patches that cross its repeat)."""
    density = scale.texels_per_metre if texels_per_metre is None else texels_per_metre
    image = resampled(reference.images[0].float(), density_size(*scale.swatch_size_m, density))
    if scale.mode == "fit":
        return image.clamp(0, 1)
    rows, cols = image.shape[-2:]
    repeats = (max(min_repeats, -(-min_side // rows)), max(min_repeats, -(-min_side // cols)))
    return image.repeat(1, *repeats).clamp(0, 1)


def phase_of_fraction(fraction: tuple[float, float], scale: WorldScale) -> tuple[float, float]:
    """A phase given as fractions of the swatch (x of its width, y of its height) in metres, the unit
    `ProjectionSettings.phase` and `WorldScale.phase` keep."""
    width, height = scale.swatch_size_m
    return fraction[0] * width, fraction[1] * height
