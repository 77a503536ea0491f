"""Tangent-space normals from a height map laid on an instance's atlas (issue 21 item 3).

The height (metres, `TextureMap.height`, laid by `texture.project` with the albedo's charts and frames)
is differentiated in atlas space: along the atlas's columns (the tangent, +u) and rows (the bitangent
of the scene's tangent frames), each difference divided by the world distance between the two
texels' surface points, so the slope is metres per metre whatever each chart's texel density. A
difference is taken only between texels of the mask (central where both neighbours are there,
one-sided at a chart's border, flat where neither is): charts are apart in the atlas (gutters), so they
never mix, and the normals are seamless wherever the laid height is.
"""
from __future__ import annotations

import torch

from .texels import TexelGeometry

MAX_SLOPE = 4.0  # rise over run; steeper (a wall of a gap) is clipped, a normal map cannot show it anyway


def _grid(values: torch.Tensor, geometry: TexelGeometry) -> torch.Tensor:
    """`[N, C]` texel values -> `[C, H, W]` (zero outside the mask)."""
    h, w = geometry.size
    out = torch.zeros(values.shape[1], h * w, dtype=values.dtype)
    out[:, geometry.index] = values.T
    return out.reshape(-1, h, w)


def _slope(height: torch.Tensor, position: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """d height / d distance along `dim` (-1: columns, -2: rows), `[H, W]`."""
    def shifted(x: torch.Tensor, step: int, fill: float) -> torch.Tensor:
        out = torch.roll(x, -step, dims=dim)
        edge = [slice(None)] * x.dim()
        edge[dim] = slice(-1, None) if step > 0 else slice(0, 1)
        out[tuple(edge)] = fill
        return out

    fwd_ok, back_ok = shifted(valid, 1, False) & valid, shifted(valid, -1, False) & valid
    h_f = torch.where(fwd_ok, shifted(height, 1, 0.0), height)
    h_b = torch.where(back_ok, shifted(height, -1, 0.0), height)
    p_f = torch.where(fwd_ok[None], shifted(position, 1, 0.0), position)
    p_b = torch.where(back_ok[None], shifted(position, -1, 0.0), position)
    distance = (p_f - p_b).norm(dim=0)
    slope = (h_f - h_b) / distance.clamp_min(1e-9)
    return torch.where(distance > 1e-9, slope, torch.zeros_like(slope)).clamp(-MAX_SLOPE, MAX_SLOPE)


def atlas_height_normals(height: torch.Tensor, geometry: TexelGeometry) -> torch.Tensor:
    """`[3, H, W]` unit tangent-space normals (+Y up the image, glTF) of `height` `[1, H, W]` (metres) on the
    atlas of `geometry`; flat outside its mask."""
    valid = geometry.mask.to(torch.bool)
    position = _grid(geometry.position.to(torch.float32), geometry)
    h = height[0].to(torch.float32)
    s_col = _slope(h, position, valid, -1)
    s_row = _slope(h, position, valid, -2)
    # Tangent (+x) is +columns. The bitangent the scene's tangents give (cross(n, t) * w, what
    # `TexelGeometry` and the exports use) runs along +rows, measured on every face of a box
    # (tests/swatch/test_swatch_relief_laid.py): dh/dy = +s_row, so the normal's y is -s_row.
    out = torch.stack([-s_col, -s_row, torch.ones_like(s_col)])
    out = out / out.norm(dim=0, keepdim=True)
    flat = torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1)
    return torch.where(valid[None], out, flat)
