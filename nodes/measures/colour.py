"""Colour measures: is the result's colour the swatch's?

- `mean_colour_delta_e76`: CIELAB ΔE76 between mean colours (issue 13 item 4).
- Invented colours (issue 25 item 3): `invented_colour_share`, the share of texels farther than ΔE76 3
  from every colour the swatch has (`swatch_palette`: CIELAB through sRGB, the swatch at its own
  resolution and resampled to the texture's density); `far_from_palette` per colour (swatch.material
  uses it on its healed swatch).
- `isolated_outliers`: share of salt-and-pepper texels (issue 13 item 4).
"""
from __future__ import annotations

import math

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

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


def _mean_lab(image: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """CIELAB (D65) of the mean linear-RGB colour of `image` `[3, H, W]` over `mask` (None: all pixels)."""
    pixels = image.float().reshape(3, -1)
    if mask is not None:
        pixels = pixels[:, mask.reshape(-1).bool()]
    if pixels.shape[1] == 0:
        return torch.full((3,), math.nan)
    mean = pixels.mean(1).clamp(0, 1)[:, None, None]
    return kornia.color.rgb_to_lab(kornia.color.linear_rgb_to_rgb(mean))[:, 0, 0]


def mean_colour_delta_e76(image: torch.Tensor, mask: torch.Tensor | None, swatch: torch.Tensor,
                          swatch_mask: torch.Tensor | None = None) -> float:
    """CIELAB ΔE76 between the mean colours of `image` over `mask` and of `swatch` (over `swatch_mask`).

    Means are taken in linear RGB (what light and a texture filter average), then converted through
    sRGB to CIELAB D65 with kornia; 1 ΔE76 is about a just-noticeable difference. NaN when a mask
    selects nothing (so `delta <= 6` fails rather than passes).
    """
    return float((_mean_lab(image, mask) - _mean_lab(swatch, swatch_mask)).norm())


def isolated_outliers(image: torch.Tensor, mask: torch.Tensor, *, k: float = 6.0, floor: float = 0.1,
                      min_neighbours: int = 8, max_similar: int = 0) -> float:
    """Fraction of masked texels that are salt-and-pepper speckle.

    A texel is an outlier when its colour differs from the median of the masked texels of its 3×3
    neighbourhood (itself included, per channel, so the corner texels of a checker's squares are
    not flagged) by more than `k` robust sigmas AND by more than `floor` (absolute, linear RGB),
    AND it is isolated: at most `max_similar` of its neighbours are within `floor` of its colour
    (a speckle has none; the end of a 1-px stroke of a printed label has one, a texel inside the
    stroke two, a checker's corner texel three). Colour differences are the largest absolute
    channel difference; sigma is 1.4826 × the median absolute deviation of the residual over the
    instance. Texels with fewer than
    `min_neighbours` masked neighbours (by default: the mask's rim, where the end of a stripe cut by
    the mask looks like a speckle) are not judged but count in the denominator. A clean texture
    scores 0; 1% random speckle about 0.01.
    """
    inside = mask.reshape(image.shape[-2:]).bool()
    if not bool(inside.any()):
        return 0.0
    img = image.float()
    x = torch.where(inside, img, torch.nan)
    windows = F.unfold(F.pad(x[None], (1, 1, 1, 1), value=math.nan), 3).reshape(3, 9, *img.shape[-2:])
    residual = (img - windows.nanmedian(1).values).abs().amax(0)
    neighbours = torch.cat([windows[:, :4], windows[:, 5:]], 1)  # the centre is window element 4
    present = ~neighbours[0].isnan()
    similar = ((neighbours - img[:, None]).abs().amax(0) <= floor) & present
    judged = inside & (present.sum(0) >= min_neighbours) & (similar.sum(0) <= max_similar)
    values = residual[inside]
    sigma = 1.4826 * (values - values.median()).abs().median()
    outliers = judged & (residual > k * sigma) & (residual > floor)
    return float(outliers.sum() / inside.sum())
