"""The swatch at its real size as an instance's views see it: the scale the prior and the score need.

A texture started by `texture.project` has its texel density; the views show
it at their own pixel density. `render_level` picks the mip level whose
texels match the views' pixels; `swatch_at_view_scale` resamples the swatch
to the views' pixels per metre (tiled a few times, so the bank holds the
patches that cross its repeat); `ideal_atlas` is the swatch laid at its real
size with no seam blending, at another phase: what the distilled texture's
renders are scored against, so a candidate is chosen for looking like the
swatch at its size, not like the swatch image at its own pixel scale.
Both read the texture's `WorldScale` through `nodes.texture.world`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from nodes.render.ops import bilinear_taps, sample_taps, uv_derivatives
from nodes.render.views import closeup_cameras, render_cameras
from nodes.texture.world import IDEAL_PHASE, ideal_texture, swatch_at
from nodes.types import Instance, Reference, Scene, TextureMap

from .texture_param import InstanceViews, select_instance_views

CLOSEUPS = 6  # close-up views per instance (candidate selection and the acceptance measure)
CLOSEUP_RESOLUTION = 128
# texture.project's info keys that the later stages copy into theirs, for diagnostics and the report (what they
# read is `TextureMap.scale`)
WORLD_SCALE_KEYS = ("texels_per_metre", "swatch_size_m", "mode", "projection")


def texels_per_pixel(views: InstanceViews, atlas_size: int) -> float:
    """Median linear number of atlas texels one view pixel spans on the instance."""
    mask = views.mask[:, 0] > 0.5
    da = uv_derivatives(views.uv, mask)[mask] * atlas_size  # [N, 4] (du/dx, du/dy, dv/dx, dv/dy)
    if da.numel() == 0:
        return 1.0
    area = (da[:, 0] * da[:, 3] - da[:, 1] * da[:, 2]).abs()
    return float(area.median().clamp_min(1e-12).sqrt())


def render_level(views: InstanceViews, atlas_size: int) -> int:
    return max(0, round(math.log2(max(texels_per_pixel(views, atlas_size), 1.0))))


def swatch_at_view_scale(reference: Reference, init: TextureMap, views: InstanceViews, min_side: int = 48
                         ) -> torch.Tensor:
    """The first reference image at the views' pixels per metre, repeated to at least `min_side` pixels
    (and twice each way); the image as it is when `init` is not world-scale."""
    if init.scale is None:
        return reference.images[0].float()
    pixels_per_metre = init.scale.texels_per_metre / texels_per_pixel(views, int(init.image.shape[-1]))
    return swatch_at(reference, init.scale, pixels_per_metre, min_side=min_side, min_repeats=2)


def ideal_atlas(scene: Scene, instance: Instance, reference: Reference, init: TextureMap,
                phase: tuple[float, float] = IDEAL_PHASE) -> torch.Tensor:
    """The swatch repeated at its real size on the instance's atlas, unblended, at another phase: the start's
    own (`TextureMap.ideal`, texture.project's) when it carries one, else laid again (`ideal_texture`)."""
    ideal = init.ideal
    if ideal is not None and phase == IDEAL_PHASE and tuple(ideal.shape) == tuple(init.image.shape):
        return ideal
    if init.scale is None:
        raise ValueError("ideal_atlas needs a world-scale texture (one with a `scale`, from texture.project)")
    return ideal_texture(scene, instance, reference, init.scale, int(init.image.shape[-1]), phase)


def render_at_level(image: torch.Tensor, views: InstanceViews, level: int) -> torch.Tensor:
    """Renders `[B, 3, H, W]` of an atlas `[3, S, S]` read at mip level `level` (box filter), zero off the instance."""
    return LevelRenderer(views, level, image.shape[-2], image.shape[-1])(image)


class LevelRenderer:
    """`render_at_level` for many atlases of one size on the same views: the texel lookups are built once."""

    def __init__(self, views: InstanceViews, level: int, height: int, width: int) -> None:

        self.level = level
        self.taps = bilinear_taps(views.uv, height >> level, width >> level, mask=views.mask[:, 0],
                                  boundary_mode="clamp")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:

        if self.level:
            image = F.avg_pool2d(image[None], 2**self.level)[0]
        return sample_taps(image, self.taps)


def closeup_views(scene: Scene, instances: Mapping[str, Instance], name: str, texels_per_metre: float,
                  seed: int = 0, isolate: bool = False) -> InstanceViews:
    """`CLOSEUPS` close-up views of one instance at one pixel per texel (`isolate`: only `instances` drawn)."""

    cameras = closeup_cameras(scene, instances[name], CLOSEUPS, CLOSEUP_RESOLUTION, 1.0 / texels_per_metre, seed)
    views = render_cameras(scene, instances, cameras, (name,) * len(cameras), CLOSEUP_RESOLUTION, isolate=isolate)
    return select_instance_views(views, name, min_pixels=64, multiple=1)


def selection_closeups(scene: Scene, instance: Instance, texels_per_metre: float) -> InstanceViews | None:
    """Close-up views of the instance (one pixel per texel) for choosing between candidates: a seed apart
    from the acceptance measure's own close-ups, so what is measured there was not chosen on."""
    try:
        # Only the instance is drawn: what stands in front of it is not what is being chosen, and the
        # cost of a close-up then follows the instance, not the scene (issue 14: cost grows with texels).
        return closeup_views(scene, {instance.name: instance}, instance.name, texels_per_metre, seed=1, isolate=True)
    except ValueError:
        return None
