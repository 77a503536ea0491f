"""nvdiffrast's `interpolate` and `texture` in pure PyTorch (differentiable).

Layouts and formulas follow nvdiffrast exactly so that code written against
these functions runs unchanged with the CUDA backend:

- `rast[b, y, x] = (u, v, z/w, triangle_id + 1)`, zero where empty; the
  barycentric weight of vertex 0 is u, of vertex 1 is v, of vertex 2 is 1-u-v.
- `texture`: `tex[b, row, col, c]`, uv (0, 0) is the corner of the *first*
  texel row/column of the tensor; texel centres sit at ((i + 0.5)/W, (j + 0.5)/H).
  The sampling position in texel units is `x = u * W - 0.5` (the convention of
  `grid_sample(align_corners=False)` with `grid = 2 * uv - 1`).

glTF's TEXCOORD_0 has (0, 0) at the top-left of the image and v growing
downward, i.e. v = 0 is the first row of a `[C, H, W]` image tensor: glTF uvs
map onto `texture` without any flip (`sample_texture_map`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

FilterMode = Literal["auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"]
BoundaryMode = Literal["wrap", "clamp", "zero"]


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes over rasterized pixels (nvdiffrast `interpolate`, no derivatives).

    attr: `[V, C]` or `[B, V, C]` (B may be 1 to broadcast); rast: `[B, H, W, 4]`;
    tri: `[F, 3]` integer. Returns `[B, H, W, C]`, zero on empty pixels.
    Differentiable w.r.t. `attr` and the barycentrics in `rast`.
    """
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    batch, height, width, _ = rast.shape
    if attr.shape[0] not in (1, batch):
        raise ValueError(f"interpolate: attr batch {attr.shape[0]} does not match rast batch {batch}")
    channels = attr.shape[-1]
    tri = tri.to(device=rast.device, dtype=torch.long)
    flat = rast.reshape(-1, 4)
    # Work on covered pixels only (often half the image), then scatter into zeros.
    covered = torch.nonzero(flat[:, 3] > 0, as_tuple=True)[0]
    corners = tri[flat[covered, 3].round().long() - 1]  # [N, 3] vertex indices
    u = flat[covered, 0:1]
    v = flat[covered, 1:2]
    if attr.shape[0] == 1:
        table = attr[0]
    else:  # one attribute table per image: offset vertex indices by image
        table = attr.reshape(-1, channels)
        corners = corners + (covered // (height * width) * attr.shape[1]).unsqueeze(1)
    a0, a1, a2 = table[corners[:, 0]], table[corners[:, 1]], table[corners[:, 2]]
    values = a2 + u * (a0 - a2) + v * (a1 - a2)  # u a0 + v a1 + (1 - u - v) a2
    out = values.new_zeros(batch * height * width, channels).index_copy(0, covered, values)
    return out.reshape(batch, height, width, channels)


def _wrap_or_clamp(index: torch.Tensor, size: int, boundary_mode: BoundaryMode) -> torch.Tensor:
    if boundary_mode == "wrap":
        return torch.remainder(index, size)
    if boundary_mode in ("clamp", "zero"):  # "zero" clamps the index and zeroes the texel's weight
        return index.clamp(0, size - 1)
    raise ValueError(f"texture: boundary_mode must be 'wrap', 'clamp' or 'zero', got {boundary_mode!r}")


def _gather_texels(tex: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """tex `[Bt, Ht, Wt, C]`, integer rows/cols `[B, H, W]` -> `[B, H, W, C]`."""
    _, _, tex_width, channels = tex.shape
    flat_index = rows * tex_width + cols
    flat = tex.reshape(tex.shape[0], -1, channels)
    if tex.shape[0] == 1:
        return flat[0][flat_index]
    batch_index = torch.arange(flat_index.shape[0], device=tex.device).view(-1, 1, 1)
    return flat[batch_index, flat_index]


def _texels(tex: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, boundary_mode: BoundaryMode) -> torch.Tensor:
    """Texels at integer (rows, cols) after the boundary rule; "zero" gives 0 outside the texture."""
    tex_height, tex_width = tex.shape[1], tex.shape[2]
    values = _gather_texels(tex, _wrap_or_clamp(rows, tex_height, boundary_mode),
                            _wrap_or_clamp(cols, tex_width, boundary_mode))
    if boundary_mode != "zero":
        return values
    inside = (rows >= 0) & (rows < tex_height) & (cols >= 0) & (cols < tex_width)
    return values * inside.unsqueeze(-1).to(values.dtype)


def _bilinear_corner(uv: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Top-left texel (row, col) of the bilinear footprint at glTF uvs `[..., 2]` and the fractions (fy, fx).

    Texel centres at integer + 0.5, as grid_sample(align_corners=False).
    """
    x = uv[..., 0] * width - 0.5
    y = uv[..., 1] * height - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    return y0.long(), x0.long(), y - y0, x - x0


def _sample_level(tex: torch.Tensor, uv: torch.Tensor, filter_mode: str, boundary_mode: BoundaryMode) -> torch.Tensor:
    tex_height, tex_width = tex.shape[1], tex.shape[2]
    uv = uv.to(tex.dtype)
    if filter_mode == "nearest":
        cols = torch.floor(uv[..., 0] * tex_width).long()
        rows = torch.floor(uv[..., 1] * tex_height).long()
        return _texels(tex, rows, cols, boundary_mode)
    r0, c0, fy, fx = _bilinear_corner(uv, tex_height, tex_width)
    fx, fy = fx.unsqueeze(-1), fy.unsqueeze(-1)
    top = _texels(tex, r0, c0, boundary_mode) * (1 - fx) + _texels(tex, r0, c0 + 1, boundary_mode) * fx
    bottom = _texels(tex, r0 + 1, c0, boundary_mode) * (1 - fx) + _texels(tex, r0 + 1, c0 + 1, boundary_mode) * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class BilinearTaps:
    """Precomputed bilinear lookups into a flattened `[H * W, C]` texture: 4 texels and weights per pixel.

    Built once per set of views (`bilinear_taps`), then sampled every optimisation
    step (`sample_taps`) without re-deriving indices; the backward pass is one
    `index_add_`, several times cheaper than autograd through four gathers.
    """

    index: torch.Tensor  # [B, H, W, 4] long, row * W + col
    weight: torch.Tensor  # [B, H, W, 4] float; 0 on pixels outside the mask

    def __getitem__(self, selection: torch.Tensor) -> BilinearTaps:
        """The taps of a subset of the views (`selection` indexes the batch dimension)."""
        return BilinearTaps(self.index[selection], self.weight[selection])


def bilinear_taps(uv: torch.Tensor, height: int, width: int, mask: torch.Tensor | None = None,
                  boundary_mode: BoundaryMode = "clamp") -> BilinearTaps:
    """The bilinear taps of `texture(..., filter_mode="linear")` at glTF uvs `uv [B, H, W, 2]`.

    Same corner and fractions as `_sample_level` (`_bilinear_corner`); `mask [B, H, W]`
    zeroes the weights of pixels that show no surface. "wrap" and "clamp" only.
    """
    if boundary_mode not in ("wrap", "clamp"):
        raise ValueError(f"bilinear_taps: boundary_mode must be 'wrap' or 'clamp', got {boundary_mode!r}")
    r0, c0, fy, fx = _bilinear_corner(uv.float(), height, width)
    cols = [_wrap_or_clamp(c0, width, boundary_mode), _wrap_or_clamp(c0 + 1, width, boundary_mode)]
    rows = [_wrap_or_clamp(r0, height, boundary_mode), _wrap_or_clamp(r0 + 1, height, boundary_mode)]
    index = torch.stack([rows[0] * width + cols[0], rows[0] * width + cols[1],
                         rows[1] * width + cols[0], rows[1] * width + cols[1]], dim=-1)
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    if mask is not None:
        weight = weight * mask.unsqueeze(-1).to(weight.dtype)
    return BilinearTaps(index.contiguous(), weight.contiguous())


class _SampleTaps(torch.autograd.Function):
    # Channel-major layout ([C, texels]): index_select / index_add_ along the last dim are ~10x
    # faster on CPU than along the rows of a [texels, C] table with C = 3.
    @staticmethod
    def forward(ctx: Any, planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weight)
        ctx.texels = planes.shape[1]
        values = planes.index_select(1, index.reshape(-1)).view(planes.shape[0], *index.shape)  # [C, B, H, W, 4]
        return (values * weight.to(planes.dtype)).sum(-1)  # [C, B, H, W]

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        index, weight = ctx.saved_tensors
        contributions = grad_out.unsqueeze(-1) * weight.to(grad_out.dtype)  # [C, B, H, W, 4]
        grad = grad_out.new_zeros(grad_out.shape[0], ctx.texels)
        # index_add_ on CPU accumulates in a fixed order: deterministic for a seed.
        grad.index_add_(1, index.reshape(-1), contributions.reshape(grad_out.shape[0], -1))
        return grad, None, None


def sample_taps(image: torch.Tensor, taps: BilinearTaps) -> torch.Tensor:
    """Sample a channel-first texture `image [C, H, W]` through precomputed taps -> `[B, C, H, W]`.

    Equal to `sample_texture_map(image, uv, boundary_mode=...)` (permuted to channel-first,
    times the mask the taps were built with) up to float rounding; differentiable w.r.t. `image`.
    """
    planes = image.reshape(image.shape[0], -1).contiguous()
    return _SampleTaps.apply(planes, taps.index, taps.weight).permute(1, 0, 2, 3).contiguous()


def build_mip_pyramid(tex: torch.Tensor, max_mip_level: int | None = None) -> list[torch.Tensor]:
    """Mip levels of `tex [B, H, W, C]`: each level halves both sizes (floor, at least 1) by box averaging."""
    levels = [tex]
    while True:
        height, width = levels[-1].shape[1], levels[-1].shape[2]
        if (height == 1 and width == 1) or (max_mip_level is not None and len(levels) > max_mip_level):
            break
        size = (max(1, height // 2), max(1, width // 2))
        # 'area' interpolation is an adaptive average pool: the 2x2 box filter for even sizes.
        down = F.interpolate(levels[-1].permute(0, 3, 1, 2), size=size, mode="area")
        levels.append(down.permute(0, 2, 3, 1).contiguous())
    return levels


def mip_level_from_uv_da(uv_da: torch.Tensor, tex_height: int, tex_width: int) -> torch.Tensor:
    """nvdiffrast's isotropic level of detail: 0.5 * log2 of the larger squared texel footprint axis.

    uv_da `[B, H, W, 4]` = (du/dx, du/dy, dv/dx, dv/dy) in uv units per pixel.
    """
    dsdx = uv_da[..., 0] * tex_width
    dsdy = uv_da[..., 1] * tex_width
    dtdx = uv_da[..., 2] * tex_height
    dtdy = uv_da[..., 3] * tex_height
    footprint = torch.maximum(dsdx * dsdx + dtdx * dtdx, dsdy * dsdy + dtdy * dtdy)
    return 0.5 * torch.log2(footprint.clamp(min=1e-20))


def texture(
    tex: torch.Tensor,
    uv: torch.Tensor,
    uv_da: torch.Tensor | None = None,
    mip_level_bias: torch.Tensor | float | None = None,
    filter_mode: FilterMode = "auto",
    boundary_mode: BoundaryMode = "wrap",
    max_mip_level: int | None = None,
) -> torch.Tensor:
    """Sample `tex [B|1, Ht, Wt, C]` at `uv [B, H, W, 2]` (nvdiffrast `texture`). Returns `[B, H, W, C]`.

    `filter_mode="auto"` is linear-mipmap-linear when `uv_da` or `mip_level_bias`
    is given, else linear. Mip level = level from `uv_da` (0 without it) + bias,
    clamped to the available levels. Differentiable w.r.t. `tex` and `uv`.
    """
    if tex.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"texture: expected tex [B,H,W,C] and uv [B,H,W,2], got {tuple(tex.shape)} and "
                         f"{tuple(uv.shape)}")
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if (uv_da is not None or mip_level_bias is not None) else "linear"
    if filter_mode in ("nearest", "linear"):
        return _sample_level(tex, uv, filter_mode, boundary_mode)
    if filter_mode not in ("linear-mipmap-nearest", "linear-mipmap-linear"):
        raise ValueError(f"texture: unknown filter_mode {filter_mode!r}")

    levels = build_mip_pyramid(tex, max_mip_level)
    level = uv.new_zeros(uv.shape[:-1])
    if uv_da is not None:
        level = level + mip_level_from_uv_da(uv_da, tex.shape[1], tex.shape[2])
    if mip_level_bias is not None:
        # A float, or a `[B, H, W]` tensor as in nvdiffrast.
        bias = mip_level_bias.to(level) if isinstance(mip_level_bias, torch.Tensor) else float(mip_level_bias)
        level = level + bias
    level = level.detach().clamp(0, len(levels) - 1)
    if filter_mode == "linear-mipmap-nearest":
        level = torch.round(level)
    low = torch.floor(level).long()
    frac = (level - low).unsqueeze(-1)
    out = torch.zeros(*uv.shape[:-1], tex.shape[-1], dtype=tex.dtype, device=tex.device)
    for index, level_tex in enumerate(levels):
        uses_low = low == index
        uses_high = (low + 1 == index) & (frac[..., 0] > 0)
        if not bool(uses_low.any() or uses_high.any()):
            continue
        sampled = _sample_level(level_tex, uv, "linear", boundary_mode)
        weight = torch.where(uses_low.unsqueeze(-1), 1 - frac, torch.zeros_like(frac)) + \
            torch.where(uses_high.unsqueeze(-1), frac, torch.zeros_like(frac))
        out = out + weight * sampled
    return out


def sample_texture_map(
    image: torch.Tensor,
    uv: torch.Tensor,
    mask: torch.Tensor | None = None,
    filter_mode: FilterMode = "linear",
    boundary_mode: BoundaryMode = "wrap",
    uv_da: torch.Tensor | None = None,
    mip_level_bias: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Sample a channel-first texture map `image [C, H, W]` at glTF uvs `uv [B, H, W, 2]` -> `[B, H, W, C]`.

    glTF uv (0, 0) is the top-left of the image = row 0 of the tensor, which is
    exactly `texture`'s convention, so no flip is applied. `mask [B, H, W]`
    (e.g. `rast[..., 3] > 0`) zeroes pixels that show no surface.
    Differentiable w.r.t. `image`.
    """
    if image.dim() != 3:
        raise ValueError(f"sample_texture_map: expected image [C,H,W], got {tuple(image.shape)}")
    tex = image.permute(1, 2, 0).unsqueeze(0)
    out = texture(tex, uv, uv_da=uv_da, mip_level_bias=mip_level_bias, filter_mode=filter_mode,
                  boundary_mode=boundary_mode)
    if mask is not None:
        out = out * mask.unsqueeze(-1).to(out.dtype)
    return out


def uv_derivatives(uv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Screen-space uv derivatives `[B, H, W, 4]` = (du/dx, du/dy, dv/dx, dv/dy) by finite differences.

    A stand-in for nvdiffrast's analytic `uv_da` (from `interpolate(..., rast_db)`),
    good enough to choose mip levels. With `mask [B, H, W]`, a forward difference
    into an empty pixel is replaced by the backward one (silhouettes).
    """
    def one_axis(dim: int) -> torch.Tensor:
        last = uv.shape[dim] - 1
        forward = torch.cat([uv.narrow(dim, 1, last) - uv.narrow(dim, 0, last), uv.narrow(dim, 0, 1) * 0], dim=dim)
        backward = torch.cat([uv.narrow(dim, 0, 1) * 0, uv.narrow(dim, 1, last) - uv.narrow(dim, 0, last)], dim=dim)
        if mask is None:
            return torch.where(forward.abs() >= backward.abs(), forward, backward)
        mask_forward = torch.cat([mask.narrow(dim, 1, last), mask.narrow(dim, 0, 1) & False], dim=dim)
        return torch.where((mask & mask_forward).unsqueeze(-1), forward, backward)

    d_dx = one_axis(2)  # along columns
    d_dy = one_axis(1)  # along rows
    return torch.stack([d_dx[..., 0], d_dy[..., 0], d_dx[..., 1], d_dy[..., 1]], dim=-1)


__all__ = [
    "BilinearTaps", "BoundaryMode", "FilterMode", "bilinear_taps", "build_mip_pyramid", "interpolate", "mip_level_from_uv_da",
    "sample_taps", "sample_texture_map", "texture", "uv_derivatives",
]

