"""What the distillation-like nodes (`distill.semantic`, `distill.pixel`, `superres.anchored`) share: the
prior names, the limits and measure settings of their candidate choice, and their input checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from graphflow import Context, UserError
from nodes.types import Reference

PriorName = Literal["closed_form", "stable_diffusion"]
SEAM_RATIO_LIMIT = 1.2  # issue 13: seams no more visible than 1.2x the texture's own neighbour differences
# Choosing between candidates uses the acceptance measure (`structure_distance`) on fewer patches (2048
# of each set's windows, not 8192) and directions (32, not 64): every candidate is measured on the same
# windows and directions, so the comparison is paired and keeps its order where the absolute number would
# be noisier (issue 14: scoring was most of an item's fixed cost; the acceptance tests still hold).
SELECTION_MEASURE = {"max_patches": 2048, "projections": 32, "seed": 0}


def check_noise_range_and_stride(params: Any) -> None:
    """The cross-field rules every distillation-like params model shares (pydantic turns the ValueError
    into a validation error naming the node)."""
    if params.t_min > params.t_max:
        raise ValueError(f"t_min ({params.t_min}) must be <= t_max ({params.t_max})")
    if params.stride > params.patch_size:
        raise ValueError(f"stride ({params.stride}) must be <= patch_size ({params.patch_size})")


def reference_images(reference: Reference, ctx: Context) -> list[torch.Tensor]:
    """The reference's images, checked (UserError naming the instance when unusable)."""
    images = [img.float() for img in reference.images]
    if not images:
        raise UserError("the reference has no images", node=ctx.node_id, item=ctx.item,
                        hint="bind at least one image to this instance in the references file")
    for i, img in enumerate(images):
        if img.dim() != 3 or img.shape[0] != 3 or min(img.shape[-2:]) < 8 or not bool(torch.isfinite(img).all()):
            raise UserError(f"reference image {i} is unusable (shape {tuple(img.shape)}, needs finite [3, H>=8, W>=8])",
                            node=ctx.node_id, item=ctx.item, hint="replace the image file")
    return images


def with_weights(params: Any, weights: Path | None) -> Any:
    """Params with the `weights` input port (a graph input, keyed by content) overriding `params.weights`."""
    return params.model_copy(update={"weights": str(weights)}) if weights is not None else params

