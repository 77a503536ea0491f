"""Issue 25's measures for a photo swatch laid in `tile` mode: tile seams and invented colours.

Tile seams (item 2). The result is registered against the swatch tiled at its real size (the phase that
best correlates the result, folded modulo the period, with the swatch at the atlas's density), which gives
the tile boundaries in both directions. At each boundary, between the two texel lines either side:
- (a) `correlation`: their correlation over the median correlation of adjacent lines elsewhere (~1 seamless);
- (b) `step`: their mean absolute step over the median step between adjacent lines (~1 seamless; a line: >1);
- (c) `band`: the mean step over the 6 line pairs either side over the same median (< 1: blurred away).
It reads an atlas whose chart is axis-aligned with the swatch (a floor or wall quad, as the acceptance
scenes are): the period is `size` times the atlas's texel density along both atlas axes.

Invented colours (item 3): the share of texels farther than ΔE76 3 from every colour the swatch has
(CIELAB through sRGB, the swatch at its own resolution).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

BAND_LINES = 6
INVENTED_DELTA_E = 3.0
INVENTED_SHARE_LIMIT = 1e-3  # issue 25 item 3: at most 0.1 % of texels


def to_lab(image: torch.Tensor) -> torch.Tensor:
    """Linear RGB `[3, ...]` -> CIELAB `[N, 3]` (kornia, through sRGB: what the eye compares)."""
    flat = image.reshape(3, -1, 1).clamp(0, 1)
    return kornia.color.rgb_to_lab(kornia.color.linear_rgb_to_rgb(flat)).reshape(3, -1).T


def swatch_palette(swatch: torch.Tensor, texels_per_pixel: float | None = None) -> torch.Tensor:
    """The colours `[3, N]` a faithful copy of `swatch [3, h, w]` may show: its own pixels, plus, when the
    texture holds `texels_per_pixel` != 1 texels per swatch pixel, the swatch resampled to that density
    (antialiased): a resampled edge between two colours is the swatch's, not an invented colour."""
    colours = [swatch.float().reshape(3, -1)]
    if texels_per_pixel is not None and abs(texels_per_pixel - 1) > 1e-3:
        size = (max(2, round(swatch.shape[-2] * texels_per_pixel)), max(2, round(swatch.shape[-1] * texels_per_pixel)))
        resampled = F.interpolate(swatch.float()[None], size=size, mode="bilinear", antialias=True,
                                  align_corners=False)[0]
        colours.append(resampled.reshape(3, -1))
    return torch.cat(colours, 1)


def invented_colour_share(image: torch.Tensor, mask: torch.Tensor | None, swatch: torch.Tensor,
                          threshold: float = INVENTED_DELTA_E, texels_per_pixel: float | None = None) -> float:
    """Share of `image [3, H, W]` texels (within `mask`) farther than ΔE76 `threshold` from every colour of
    `swatch [3, h, w]` (`swatch_palette`). Colours are compared on a 0.25-ΔE grid first (fast on big atlases)."""
    texels = image[:, mask] if mask is not None else image.reshape(3, -1)
    if texels.shape[1] == 0:
        return math.nan
    return float(far_from_palette(texels, swatch_palette(swatch, texels_per_pixel), threshold).float().mean())


def far_from_palette(colours: torch.Tensor, palette: torch.Tensor, threshold: float = INVENTED_DELTA_E
                     ) -> torch.Tensor:
    """Per colour of `colours [3, N]` (linear RGB): is it farther than ΔE76 `threshold` from every colour of
    `palette [3, M]`? Both are put on a 0.25-ΔE grid first (unique values: fast on big atlases)."""
    grid = np.unique(np.round(to_lab(palette.float()).numpy() * 4) / 4, axis=0)
    wanted, inverse = np.unique(np.round(to_lab(colours.float()).numpy() * 4) / 4, axis=0, return_inverse=True)
    distance, _ = cKDTree(grid).query(wanted, k=1, distance_upper_bound=threshold + 0.5)
    return torch.from_numpy(distance[np.asarray(inverse).reshape(-1)] > threshold)


def _perceptual(image: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values: steps and correlations as the eye weighs them."""
    return kornia.color.linear_rgb_to_rgb(image.float().clamp(0, 1))


def register_tiles(image: torch.Tensor, mask: torch.Tensor, swatch: torch.Tensor, period: tuple[int, int]
                   ) -> tuple[int, int]:
    """(row, column) in the atlas where the swatch's top-left corner lands, modulo the period `(py, px)`:
    the shift that best correlates the result folded by the period with the swatch at that size."""
    py, px = period
    luma = _perceptual(image).mean(0)
    luma = torch.where(mask, luma - luma[mask].mean(), torch.zeros_like(luma))
    h, w = luma.shape
    padded = F.pad(luma, (0, (-w) % px, 0, (-h) % py))
    folded = padded.reshape(padded.shape[0] // py, py, padded.shape[1] // px, px).sum((0, 2))
    small = F.interpolate(swatch.float()[None], size=(py, px), mode="bilinear", antialias=True,
                          align_corners=False)[0]
    reference = _perceptual(small).mean(0)
    reference = reference - reference.mean()
    # corr[d] = sum_a folded[a] * reference[a - d]: where the swatch's origin sits in the folded result
    corr = torch.fft.ifft2(torch.fft.fft2(folded) * torch.conj(torch.fft.fft2(reference))).real
    index = int(torch.argmax(corr))
    return index // px, index % px


@dataclass(frozen=True)
class DirectionSeams:
    correlation: float  # (a)
    step: float  # (b)
    band: float  # (c)
    boundaries: int


@dataclass(frozen=True)
class TileSeams:
    across_columns: DirectionSeams  # vertical boundaries (a line between two columns)
    across_rows: DirectionSeams  # horizontal boundaries
    origin: tuple[int, int]

    @property
    def correlation(self) -> float:
        return min(self.across_columns.correlation, self.across_rows.correlation)

    @property
    def step(self) -> float:
        """The direction whose step ratio is farther from 1 (in log)."""
        steps = (self.across_columns.step, self.across_rows.step)
        return max(steps, key=lambda s: abs(math.log(max(s, 1e-9))))

    @property
    def band(self) -> float:
        return min(self.across_columns.band, self.across_rows.band)

    def failures(self) -> list[str]:
        out = []
        if not self.correlation >= 0.85:
            out.append(f"seam correlation ratio {self.correlation:.2f} < 0.85")
        if not 0.67 <= self.step <= 1.5:
            out.append(f"seam step ratio {self.step:.2f} outside [0.67, 1.5]")
        if not self.band >= 0.7:
            out.append(f"seam band ratio {self.band:.2f} < 0.7")
        return out


def _line_pairs(values: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per adjacent column pair (c, c + 1) of `values [C, H, W]`: correlation and mean absolute step over
    the rows where both are in `mask` (NaN where fewer than 8 rows)."""
    a, b = values[:, :, :-1], values[:, :, 1:]
    both = (mask[:, :-1] & mask[:, 1:]).float()[None].expand_as(a)
    count = both.sum((0, 1))
    step = ((a - b).abs() * both).sum((0, 1)) / count.clamp_min(1)
    mean_a, mean_b = (a * both).sum((0, 1)) / count.clamp_min(1), (b * both).sum((0, 1)) / count.clamp_min(1)
    da, db = (a - mean_a) * both, (b - mean_b) * both
    corr = (da * db).sum((0, 1)) / ((da * da).sum((0, 1)) * (db * db).sum((0, 1))).sqrt().clamp_min(1e-12)
    few = count < 8 * values.shape[0]
    step[few], corr[few] = math.nan, math.nan
    return corr.numpy(), step.numpy()


def _direction(values: torch.Tensor, mask: torch.Tensor, origin: int, period: int) -> DirectionSeams:
    """Seam ratios at the boundaries between columns `origin - 1 + k * period` and the next."""
    corr, step = _line_pairs(values, mask)
    pairs = np.arange(len(step))
    boundary_pairs = np.arange((origin - 1) % period, len(step), period)
    near = np.min(np.abs(pairs[:, None] - boundary_pairs[None, :]), axis=1) <= 2 if len(boundary_pairs) else \
        np.zeros(len(step), dtype=bool)
    elsewhere = ~near & np.isfinite(step)
    median_corr, median_step = float(np.median(corr[elsewhere])), float(np.median(step[elsewhere]))
    a, b, c = [], [], []
    for p in boundary_pairs:
        lo, hi = p - BAND_LINES, p + BAND_LINES
        if lo < 0 or hi >= len(step) or not np.isfinite(step[p]) or not np.isfinite(step[lo:hi + 1]).all():
            continue
        a.append(corr[p] / max(median_corr, 1e-9))
        b.append(step[p] / max(median_step, 1e-9))
        c.append(float(np.mean(step[lo:hi + 1])) / max(median_step, 1e-9))
    if not a:
        return DirectionSeams(math.nan, math.nan, math.nan, 0)
    return DirectionSeams(float(np.mean(a)), float(np.mean(b)), float(np.mean(c)), len(a))


def tile_seams(image: torch.Tensor, mask: torch.Tensor, swatch: torch.Tensor, period: tuple[int, int]
               ) -> TileSeams:
    """The tile-seam ratios (module docstring) of `image [3, H, W]` (atlas, `mask [H, W]`), where the swatch
    repeats every `period = (rows, columns)` texels."""
    py, px = period
    oy, ox = register_tiles(image, mask, swatch, period)
    values = _perceptual(image)
    columns = _direction(values, mask, ox, px)
    rows = _direction(values.transpose(1, 2), mask.T, oy, py)
    return TileSeams(across_columns=columns, across_rows=rows, origin=(oy, ox))


@dataclass(frozen=True)
class PhotoSwatchRow:
    """Issue 25's verdict on one tiled photo swatch: tile seams, invented colours, structure and colour."""

    name: str
    seams: TileSeams
    invented: float
    structure: float
    structure_bound: float
    delta_e: float

    def failures(self) -> list[str]:
        out = list(self.seams.failures())
        if not self.invented <= INVENTED_SHARE_LIMIT:
            out.append(f"invented colours {self.invented:.4f} > {INVENTED_SHARE_LIMIT}")
        if not self.structure <= self.structure_bound:
            out.append(f"structure {self.structure:.4f} > 2 x ideal-phase + 0.01 = {self.structure_bound:.4f}")
        if not self.delta_e <= 8:
            out.append(f"ΔE76 {self.delta_e:.2f} > 8")
        return out


def tile_period(material_albedo: torch.Tensor, material_size: float, texels_per_metre: float) -> tuple[int, int]:
    """(rows, columns) in texels over which a material of `material_size` metres repeats at a density."""
    width = material_size * texels_per_metre
    return max(2, round(width * material_albedo.shape[-2] / material_albedo.shape[-1])), max(2, round(width))


def photo_row(name: str, albedo: torch.Tensor, mask: torch.Tensor, photo: torch.Tensor, photo_size: float,
              tile: torch.Tensor, tile_size: float, texels_per_metre: float, quality: Any) -> PhotoSwatchRow:
    """The row for an atlas `albedo` at `texels_per_metre` of a floor laid with `tile` (the material's albedo,
    `tile_size` metres wide) made from `photo` (`photo_size` metres wide); `quality` is issue 13's
    `QualityRow` of the same atlas (structure against the photo repeated at its real size, ΔE76)."""
    period = tile_period(tile, tile_size, texels_per_metre)
    tile_at_density = F.interpolate(tile.float()[None], size=period, mode="bilinear", antialias=True,
                                    align_corners=False)[0]
    texels_per_pixel = texels_per_metre * photo_size / photo.shape[-1]
    return PhotoSwatchRow(name=name, seams=tile_seams(albedo, mask.bool(), tile_at_density, period),
                          invented=invented_colour_share(albedo, mask.bool(), photo, texels_per_pixel=texels_per_pixel),
                          structure=float(quality.structure["result"]), structure_bound=float(quality.structure_bound),
                          delta_e=float(quality.delta_e))
