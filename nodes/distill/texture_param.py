"""A texture on an instance's UV atlas, parameterized as a Laplacian pyramid.

The atlas image is the sum of `levels` parameter images at sizes
`size / 2^k`, each upsampled (bilinear) to full size. A coarse parameter
moves a large area of the atlas per unit of learning rate, so with Adam the
coarse structure converges first and fine detail last.

Renders go through the views' interpolated UVs with the differentiable
`nodes.render.ops.sample_texture_map` (glTF UV convention, clamp at the
atlas border). Texels that no view samples are filled from the seen ones
(`nodes.render.uv_raster.fill_atlas_gutter`, the one gutter policy) when the
atlas is exported, so seams have no holes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nodes.render.ops import BilinearTaps, bilinear_taps, sample_taps
from nodes.render.uv_raster import fill_atlas_gutter
from nodes.types import TextureMap, Views


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`[N, C, H, W]` resized; area (antialiased) when shrinking, bilinear when growing."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if size[0] <= image.shape[-2] and size[1] <= image.shape[-1]:
        return F.interpolate(image, size=size, mode="area")
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


class PyramidTexture(torch.nn.Module):
    """RGB atlas `[3, size, size]` = Σ_k up(level_k); level 0 is the coarsest."""

    def __init__(self, size: int, levels: int = 4, init: torch.Tensor | None = None,
                 fill: torch.Tensor | float = 0.5, render_level: int = 0) -> None:
        super().__init__()
        if size < 2 ** (levels - 1):
            raise ValueError(f"texture size {size} too small for {levels} pyramid levels")
        self.size = size
        # Renders read the atlas box-filtered by 2^render_level (a mip level): when a view's pixel
        # spans several texels, every texel under it gets its share of the gradient instead of four.
        self.render_level = max(0, min(render_level, size.bit_length() - 1))
        sizes = [max(1, size >> (levels - 1 - k)) for k in range(levels)]
        if init is None:
            colour = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1).expand(3, size, size)
            init = colour
        target = _resize(init[None].float(), (size, size))
        params = []
        reconstruction = torch.zeros(1, 3, size, size)
        for level_size in sizes:
            # Each level holds the residual of the init at its scale (an exact Laplacian decomposition).
            level_target = _resize(target, (level_size, level_size))
            current = _resize(reconstruction, (level_size, level_size)) if level_size < size else reconstruction
            residual = level_target - current
            params.append(torch.nn.Parameter(residual.clone()))
            reconstruction = reconstruction + F.interpolate(residual, size=(size, size), mode="bilinear",
                                                            align_corners=False)
        self.levels = torch.nn.ParameterList(params)

    def image(self) -> torch.Tensor:
        """The atlas `[3, size, size]` (differentiable)."""
        total = None
        for level in self.levels:
            up = level if level.shape[-1] == self.size else F.interpolate(
                level, size=(self.size, self.size), mode="bilinear", align_corners=False)
            total = up if total is None else total + up
        assert total is not None
        return total[0]

    def taps(self, uv: torch.Tensor, mask: torch.Tensor) -> BilinearTaps:
        """The bilinear lookups of this atlas at glTF UVs `[B, H, W, 2]`, zero where `mask` `[B, 1, H, W]` is 0.

        They depend only on the views and the atlas size: build them once per run, then `render_taps` each step.
        """
        side = self.size >> self.render_level
        return bilinear_taps(uv, side, side, mask=mask[:, 0], boundary_mode="clamp")

    def render_taps(self, taps: BilinearTaps) -> torch.Tensor:
        """Renders `[B, 3, H, W]` through precomputed `taps` (zero off the mask they were built with)."""
        image = self.image()
        if self.render_level:
            image = F.avg_pool2d(image[None], 2**self.render_level)[0]
        return sample_taps(image, taps)

    def render(self, uv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Renders `[B, 3, H, W]` through interpolated glTF UVs `[B, H, W, 2]`, zero where `mask` `[B, 1, H, W]` is 0."""
        return self.render_taps(self.taps(uv, mask))

    def to_texture_map(self, atlas_mask: torch.Tensor, seen: torch.Tensor | None, info: dict[str, Any]) -> TextureMap:
        """The clamped atlas with unseen texels filled from their seen neighbours by UV-space dilation
        (`seen` None: no fill, the texture started from a complete atlas and unseen texels keep it)."""

        with torch.no_grad():
            image = self.image().clamp(0.0, 1.0)
            if seen is not None and bool(seen.any()):
                image = fill_atlas_gutter(image, seen)
        return TextureMap(image=image.contiguous(), mask=atlas_mask.bool(), info=info)


def seen_texels(uv: torch.Tensor, mask: torch.Tensor, size: int) -> torch.Tensor:
    """`[size, size]` bool: texels that bilinear sampling at the masked pixels touches."""
    pts = uv[mask[:, 0] > 0.5]  # [N, 2] glTF uv
    seen = torch.zeros(size, size, dtype=torch.bool)
    if pts.numel() == 0:
        return seen
    x = pts[:, 0].clamp(0, 1) * size - 0.5
    y = pts[:, 1].clamp(0, 1) * size - 0.5
    x0, y0 = x.floor().long(), y.floor().long()
    for dy in (0, 1):
        for dx in (0, 1):
            seen[(y0 + dy).clamp(0, size - 1), (x0 + dx).clamp(0, size - 1)] = True
    return seen


@dataclass(frozen=True)
class InstanceViews:
    """The views of one instance, cropped to where it appears."""

    uv: torch.Tensor  # [B, H, W, 2]
    mask: torch.Tensor  # [B, 1, H, W] float, 1 on the instance's pixels
    view_index: torch.Tensor  # [B] indices into the full Views
    crop: tuple[int, int, int, int]  # y0, y1, x0, x1 in the full views


def select_instance_views(views: Views, instance_name: str, min_pixels: int = 16, multiple: int = 8) -> InstanceViews:
    """The views that see the instance (its orbit cameras first), cropped to the union of its masks.

    Raises `ValueError` when no view shows at least `min_pixels` of it (callers turn it into a UserError).
    """
    if instance_name not in views.instance_names:
        raise ValueError(f"instance '{instance_name}' is not in the views (views know {list(views.instance_names)})")
    index = views.instance_names.index(instance_name)
    # Its own cameras' views first, and only they are scanned: a scene's other views cost nothing here
    # (every item of a stage runs this; scanning all views made the stage grow with instances squared).
    own = torch.tensor([k for k, name in enumerate(views.view_target) if name == instance_name], dtype=torch.long)
    chosen = own[(views.instance_id[own] == index).flatten(1).sum(1) >= min_pixels]
    if chosen.numel() == 0:  # no own view shows it: any view of the scene that does
        chosen = torch.nonzero((views.instance_id == index).flatten(1).sum(1) >= min_pixels).flatten()
    if chosen.numel() == 0:
        raise ValueError(f"instance '{instance_name}' covers fewer than {min_pixels} pixels in every view")
    masks = views.instance_id[chosen] == index  # [B', H, W]
    union = masks.any(0)
    rows = torch.nonzero(union.any(1)).flatten()
    cols = torch.nonzero(union.any(0)).flatten()
    h, w = union.shape
    y0, y1 = int(rows.min()), int(rows.max()) + 1
    x0, x1 = int(cols.min()), int(cols.max()) + 1
    # Grow the crop to a multiple of `multiple` (pyramid levels) inside the image when possible.
    def grow(lo: int, hi: int, limit: int) -> tuple[int, int]:
        want = min(limit, -(-(hi - lo) // multiple) * multiple)
        extra = want - (hi - lo)
        lo = max(0, lo - extra // 2)
        hi = min(limit, lo + want)
        lo = max(0, hi - want)
        return lo, hi
    y0, y1 = grow(y0, y1, h)
    x0, x1 = grow(x0, x1, w)
    uv = views.uv[chosen, y0:y1, x0:x1].float()
    mask = masks[:, y0:y1, x0:x1].float()[:, None]
    return InstanceViews(uv=uv.contiguous(), mask=mask.contiguous(), view_index=chosen, crop=(y0, y1, x0, x1))
