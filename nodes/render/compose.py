"""Render `Views` with per-instance texture atlases: the differentiable image a distillation step scores."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from nodes.types import Views

from .ops import BoundaryMode, FilterMode, sample_texture_map


def render_textures(views: Views, images: Mapping[str, torch.Tensor], *, background: float = 0.0,
                    filter_mode: FilterMode = "linear", boundary_mode: BoundaryMode = "clamp") -> torch.Tensor:
    """`[B, H, W, C]`: each pixel samples the atlas `images[name] [C, h, w]` of the instance it shows.

    Pixels of instances missing from `images`, and empty pixels, get `background`.
    Rows follow `views` (row 0 at the bottom; `.flip(1)` for an upright image).
    Differentiable w.r.t. every image. Clamp is the default boundary so atlas
    borders do not bleed into the opposite edge.
    """
    if not images:
        raise ValueError("render_textures: no images given")
    first = next(iter(images.values()))
    batch, height, width = views.instance_id.shape
    out = first.new_full((batch * height * width, first.shape[0]), background)
    instance_id = views.instance_id.reshape(-1).to(first.device)
    uv = views.uv.reshape(-1, 2).to(first.device)
    for index, name in enumerate(views.instance_names):
        image = images.get(name)
        if image is None:
            continue
        pixels = torch.nonzero(instance_id == index, as_tuple=True)[0]
        if pixels.numel() == 0:
            continue
        sampled = sample_texture_map(image, uv[pixels].view(1, 1, -1, 2), filter_mode=filter_mode,
                                     boundary_mode=boundary_mode)
        out = out.index_copy(0, pixels, sampled.view(-1, image.shape[0]))
    return out.view(batch, height, width, -1)


__all__ = ["render_textures"]
