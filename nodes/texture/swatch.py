"""A reference image as a swatch with a real-world size, and lookups into it.

A swatch spans `width_m` x `height_m` metres (`Reference.size` and the image's
aspect ratio). Before lookups it is resampled (antialiased) to the atlas's
texel density when it has more pixels than the atlas can show, so a fine
pattern averages instead of aliasing into speckle. `sample_tiled` repeats it
(wrap), `sample_fitted` places it once (clamp), `sample_along_axis` projects it
along one world axis per point (triplanar charts, whose UVs cannot carry it
undistorted; `nodes.texture.project` picks the axis).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Swatch:
    image: torch.Tensor  # [3, h, w] linear RGB
    width_m: float
    height_m: float

    @staticmethod
    def at_density(image: torch.Tensor, width_m: float, texels_per_metre: float,
                   height_m: float | None = None) -> Swatch:
        """The image spanning `width_m` (height by aspect unless given), at most `texels_per_metre` pixels/metre."""
        image = image.float()
        height_m = height_m if height_m is not None else width_m * image.shape[-2] / image.shape[-1]
        target = density_size(width_m, height_m, texels_per_metre)
        if image.shape[-1] > target[1] or image.shape[-2] > target[0]:
            image = resampled(image, (min(target[0], image.shape[-2]), min(target[1], image.shape[-1])))
        # Colours (the first 3 channels) clamp to [0, 1]; further maps stacked after them (a SwatchMaterial's
        # height in metres, roughness) keep their values.
        image = torch.cat([image[:3].clamp(0, 1), image[3:]])
        return Swatch(image.contiguous(), float(width_m), float(height_m))

    def mean_colour(self) -> torch.Tensor:
        return self.image.mean((1, 2))

    def border_colour(self, fraction: float = 0.04) -> torch.Tensor:
        """Mean colour of the outer ring (a fitted picture's frame)."""
        h, w = self.image.shape[-2:]
        ring = torch.ones(h, w, dtype=torch.bool)
        dy, dx = max(1, round(h * fraction)), max(1, round(w * fraction))
        ring[dy:h - dy, dx:w - dx] = False
        return self.image[:, ring].mean(1)


def density_size(width_m: float, height_m: float, texels_per_metre: float) -> tuple[int, int]:
    """(rows, columns) of a swatch spanning `width_m` x `height_m` metres at `texels_per_metre` (at least 2)."""
    return max(2, round(height_m * texels_per_metre)), max(2, round(width_m * texels_per_metre))


def resampled(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`image [C, h, w]` resampled to `size` (bilinear, antialiased when shrinking): every swatch resize."""
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _bilinear(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, wrap: bool) -> torch.Tensor:
    """`image [3, h, w]` at continuous pixel coordinates (centres at k + 0.5) -> `[N, 3]`."""
    h, w = image.shape[-2:]
    x, y = x - 0.5, y - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.long(), y0.long()

    def fetch(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        if wrap:
            xi, yi = xi % w, yi % h
        else:
            xi, yi = xi.clamp(0, w - 1), yi.clamp(0, h - 1)
        return image[:, yi, xi].T

    top = fetch(x0, y0) * (1 - fx) + fetch(x0 + 1, y0) * fx
    bottom = fetch(x0, y0 + 1) * (1 - fx) + fetch(x0 + 1, y0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def sample_tiled(swatch: Swatch, s: torch.Tensor) -> torch.Tensor:
    """Colours `[N, 3]` at surface coordinates `s [N, 2]` (metres; x right, y down), the swatch repeated."""
    h, w = swatch.image.shape[-2:]
    return _bilinear(swatch.image, s[:, 0] / swatch.width_m * w, s[:, 1] / swatch.height_m * h, wrap=True)


def sample_fitted(swatch: Swatch, unit: torch.Tensor) -> torch.Tensor:
    """Colours `[N, 3]` at picture coordinates `unit [N, 2]` in [0, 1]² (clamped outside)."""
    h, w = swatch.image.shape[-2:]
    return _bilinear(swatch.image, unit[:, 0] * w, unit[:, 1] * h, wrap=False)


def triplanar_coords(position: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Per point, the three axis projections' coordinates `[3, N, 2]` (metres, x right, y down).

    Each projection reads as seen from outside the surface: on a wall facing +X the swatch's right is
    -Z and its down is -Y; on a floor (+Y) right is +X and down is +Z.
    """
    x, y, z = position.unbind(-1)
    sx, sy, sz = (torch.where(normal[:, k] < 0, -1.0, 1.0) for k in range(3))
    coords = torch.stack([
        torch.stack([-z * sx, -y], -1),
        torch.stack([x, z * sy], -1),
        torch.stack([x * sz, -y], -1),
    ])
    return coords


def sample_along_axis(swatch: Swatch, position: torch.Tensor, normal: torch.Tensor, axis: torch.Tensor,
                      phase: torch.Tensor | None = None) -> torch.Tensor:
    """Colours `[N, C]`: the tiled swatch projected along world axis `axis [N]` (0 x, 1 y, 2 z) per point."""
    coords = triplanar_coords(position, normal)
    chosen = coords[axis, torch.arange(len(axis))]
    if phase is not None:
        chosen = chosen + phase
    return sample_tiled(swatch, chosen)
