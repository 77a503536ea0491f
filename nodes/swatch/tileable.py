"""Making a photo swatch tileable (issue 25 item 1): one transform applied to every map stacked as channels.

Method (why: it moves no texel of the photo except inside a narrow band around the wrap, copies texels
rather than averaging them, so it keeps the photo's sharpness and invents no colour):
1. A swatch that already tiles (its wrap step no larger than its ordinary neighbour steps) is returned
   unchanged: a user with a tileable swatch gets exactly today's result.
2. The photo is trimmed to its texture's own period where it has one (`best_period`: two brick
   courses, a roof-tile row), so the structure continues across the wrap; metres per texel are kept.
   (Moisan's periodic-plus-smooth split was tried for the light fall-off's step and dropped: it shifted
   whole bricks' brightness, 13.6 % of the brick photo's texels took colours the photo never has.)
3. The wrap seams are hidden by min-error boundary cuts (Efros & Freeman 2001; Kwatra et al. 2003's seam
   with one patch per seam): the swatch rolled by half so the vertical wrap seam lies in the middle, a
   strip of the swatch itself pasted over a band around it (the strip whose band edges agree best with
   what they cover), and the band cut along the minimum-error vertical paths (dynamic programming) on
   either side of the seam; then the same across the horizontal seam, with a path that closes around the
   now periodic width. Each cut is hard for the detail and feathered for the low frequencies; a feathered
   texel whose colour the photo lacks takes the copied texel. A patch is kept only where its worse cut
   costs less than the seam it hides. Finally the tile is rolled so its wrap lies on an ordinary line pair.
Every channel (albedo, then height, roughness) takes the same strip and the same cuts; the costs read
the albedo only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from nodes.measures.colour import far_from_palette, mean_colour_delta_e76


CANDIDATE_STRIPS = 8  # strips whose cuts are computed (the best by edge match)


@dataclass(frozen=True)
class TileSettings:
    enabled: bool = True
    band_fraction: float = 0.125  # half-width of the patched band around each wrap seam, of the side
    identity_novelty: float = 0.75  # `wrap_novelty` at most this in both directions: the swatch already tiles
    typical_wrap: bool = True  # roll the healed tile so its wrap is an ordinary line pair
    min_period_fraction: float = 0.55  # the tile may be trimmed to this share of the side to match a period


def wrap_step_ratios(image: torch.Tensor) -> tuple[float, float]:
    """(across the left/right wrap, across the top/bottom wrap): the mean absolute step between the last and
    first column (row) over the median step between adjacent columns (rows) inside the image."""
    x = image[:3].float()
    steps_x = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((0, 1))
    steps_y = (x[:, 1:, :] - x[:, :-1, :]).abs().mean((0, 2))
    wrap_x = float((x[:, :, 0] - x[:, :, -1]).abs().mean())
    wrap_y = float((x[:, 0, :] - x[:, -1, :]).abs().mean())
    return wrap_x / max(float(steps_x.median()), 1e-9), wrap_y / max(float(steps_y.median()), 1e-9)


def wrap_novelty(image: torch.Tensor) -> tuple[float, float]:
    """(across the left/right wrap, across the top/bottom wrap): how far the wrap's line pair (last line, first
    line) is from the most alike pair of adjacent lines inside, over the median step between adjacent lines.
    0 for a swatch that repeats exactly (stripes, checks: the wrap is one of its own line pairs); a photo
    crop's wrap pairs lines that never meet inside it (> 1)."""
    out = []
    for x in (image[:3].float(), image[:3].float().transpose(1, 2)):
        a, b = x[:, :, :-1], x[:, :, 1:]
        distance = ((a - x[:, :, -1:]).abs().mean((0, 1)) + (b - x[:, :, :1]).abs().mean((0, 1))) / 2
        step = float((a - b).abs().mean((0, 1)).median())
        out.append(float(distance[1:-1].min()) / max(step, 1e-6) if distance.numel() > 2 else 0.0)
    return out[0], out[1]


def _min_path(cost: np.ndarray) -> np.ndarray:
    """Per row of `cost [H, B]`, the column of the minimum-cost 8-connected path from top to bottom."""
    h, b = cost.shape
    total = cost.copy()
    for y in range(1, h):
        prev = total[y - 1]
        left = np.concatenate([[np.inf], prev[:-1]])
        right = np.concatenate([prev[1:], [np.inf]])
        total[y] += np.minimum(prev, np.minimum(left, right))
    path = np.zeros(h, dtype=np.int64)
    path[-1] = int(np.argmin(total[-1]))
    for y in range(h - 2, -1, -1):
        lo, hi = max(0, path[y + 1] - 1), min(b, path[y + 1] + 2)
        path[y] = lo + int(np.argmin(total[y, lo:hi]))
    return path


def _closed_min_path(cost: np.ndarray) -> np.ndarray:
    """Like `_min_path`, but the path's last column is within one of its first (it closes around a wrap)."""
    best, best_path = math.inf, None
    for start in range(cost.shape[1]):
        forced = cost.copy()
        forced[0] = np.inf
        forced[0, start] = cost[0, start]
        tail = np.full(cost.shape[1], np.inf)
        tail[max(0, start - 1):start + 2] = 0
        forced[-1] = forced[-1] + tail
        path = _min_path(forced)
        total = float(forced[np.arange(len(path)), path].sum())
        if total < best:
            best, best_path = total, path
    assert best_path is not None
    return best_path


def _albedo_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared colour difference per texel (albedo channels, sRGB-like gamma so dark detail counts)."""
    ga, gb = np.clip(a[:3], 0, 1) ** (1 / 2.2), np.clip(b[:3], 0, 1) ** (1 / 2.2)
    return ((ga - gb) ** 2).sum(0)


def heal_vertical_seam(maps: np.ndarray, source: np.ndarray, band: int, closed: bool, sigma: float,
                       palette: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """`maps [C, H, W]` whose seam lies between columns W/2 - 1 and W/2: a strip of `source [C, H, Ws]` (the
    photo on the same rows, seam-free, wider than the tile) pasted over columns [W/2 - band, W/2 + band) and
    cut along min-error paths either side. The cut is hard for the detail (above `sigma` texels: copied
    texels stay sharp) and feathered for the low frequencies (a light fall-off differs between the strip and
    what it covers); a blended texel whose colour `palette [3, N]` (the photo's) lacks takes the copied one.
    `closed`: paths close top-to-bottom (the rows already wrap). The patch is kept only when
    the worse of its two cuts costs less than the seam it hides."""
    c, h, w = maps.shape
    lo, hi = w // 2 - band, w // 2 + band
    overlap = band  # the whole region: a strip must continue both sides (a brick course, a tile row)
    edges = np.r_[0:overlap, 2 * band - overlap:2 * band]
    low, high = split_bands(maps, sigma, wrap=True)
    source_low, source_high = split_bands(source, sigma, wrap=False)
    seam_cost = float(_albedo_cost(high[:, :, w // 2 - 1] + 0.5, high[:, :, w // 2] + 0.5).sum())
    # the strip whose edge columns match what they cover, on the detail (a light fall-off would otherwise
    # pick the strip of the right brightness over the strip of the right structure)
    errors = [float(_albedo_cost(high[:, :, lo + edges] + 0.5, source_high[:, :, x0 + edges] + 0.5).sum())
              for x0 in range(source.shape[-1] - 2 * band + 1)]
    find = _closed_min_path if closed else _min_path
    best = (math.inf, 0, None, None, None)
    for x0 in np.argsort(errors)[:CANDIDATE_STRIPS]:  # the best-matching strips, judged by their cuts
        strip = source_high[:, :, x0:x0 + 2 * band]
        cost = _albedo_cost(high[:, :, lo:hi] + 0.5, strip + 0.5)
        left = find(cost[:, :band])  # left of it the base, right of it the strip
        right = band + find(cost[:, band:])  # left of it the strip, right of it the base
        # each cut is one line of discontinuity, like the seam
        cut = max(float(cost[np.arange(h), left].sum()), float(cost[np.arange(h), right - 1].sum()))
        if cut < best[0]:
            best = (cut, int(x0), left, right, strip)
    cut_cost, best_x, left, right, strip_high = best
    region_high = high[:, :, lo:hi]
    info = {"strip_column": best_x, "seam_cost": round(seam_cost, 3), "cut_cost": round(cut_cost, 3)}
    if cut_cost >= seam_cost:  # the seam is already the cheapest line (a tile trimmed to its period)
        return maps, {**info, "strip_column": None}
    columns = np.arange(2 * band)[None, :]
    take = (columns >= left[:, None]) & (columns < right[:, None])
    soft = gaussian_filter1d(gaussian_filter1d(take.astype(np.float64), sigma / 2, axis=1, mode="nearest"),
                             sigma / 2, axis=0, mode="wrap" if closed else "nearest")
    blended = (np.where(take[None], strip_high, region_high) + soft[None] * source_low[:, :, best_x:best_x + 2 * band]
               + (1 - soft[None]) * low[:, :, lo:hi])
    copied = np.where(take[None], source[:, :, best_x:best_x + 2 * band], maps[:, :, lo:hi])
    # A blended texel whose colour the photo never has (detail of one place on the light of another) is
    # refused: it takes the copied texel instead (issue 25 item 3: no invented colour).
    invented = far_from_palette(torch.from_numpy(blended[:3].reshape(3, -1)),
                                torch.from_numpy(palette)).numpy().reshape(h, 2 * band)
    out = maps.copy()
    out[:, :, lo:hi] = np.where(invented[None], copied, blended)
    return out, {**info, "refused_blends": int(invented.sum())}


def best_period(maps: np.ndarray, axis: int, min_fraction: float) -> tuple[int, int]:
    """(start, length) of the span along `axis` (2: columns, 1: rows) whose wrap joins the most alike lines:
    the length `L >= min_fraction * n` whose lines at lag L differ least on average (a brick course, a tile
    row: the structure's own period), then the start whose line at lag L differs least from it."""
    x = np.clip(maps[:3], 0, 1) ** (1 / 2.2)
    n = x.shape[axis]
    # lines of the detail only: a light fall-off would make every short lag look alike, and a noise-like
    # texture's detail is about as unlike at every lag, so only a structure's own period shows as a dip
    detail = x - gaussian_filter(x, (0, n / 16, n / 16), mode="mirror")
    lines = np.moveaxis(detail, axis, 0).reshape(n, -1)  # [n, everything else]
    lengths = np.arange(max(2, int(math.ceil(min_fraction * n))), n)
    lag_error = np.array([float(np.abs(lines[lag:] - lines[:n - lag]).mean()) for lag in lengths])
    full = float(np.abs(lines[0] - lines[-1]).mean())  # the whole span's own wrap
    if len(lag_error) == 0 or full <= lag_error.min():
        return 0, n
    # the longest span about as good as the best (keep as much of the photo as the structure allows)
    length = int(lengths[np.nonzero(lag_error <= lag_error.min() * 1.03)[0].max()])
    starts = np.arange(0, n - length)
    start_error = np.abs(lines[starts + length] - lines[starts]).mean(1)
    return int(starts[int(np.argmin(start_error))]), length


def period_span(photo: np.ndarray, min_fraction: float, max_delta_e: float = 4.0) -> tuple[int, int, int, int]:
    """(row, column, height, width) of the span the tile keeps: the texture's period (`best_period`), unless
    that span's mean colour is more than `max_delta_e` from the photo's (a short period on a small photo
    keeps too few bricks to carry the photo's colour mix); then a longer minimum, then the whole photo."""
    whole = torch.from_numpy(photo[:3]).float()
    for fraction in (min_fraction, max(min_fraction, 0.8)):
        x0, width = best_period(photo, 2, fraction)
        y0, height = best_period(photo, 1, fraction)
        kept = torch.from_numpy(photo[:3, y0:y0 + height, x0:x0 + width]).float()
        if mean_colour_delta_e76(kept, None, whole) <= max_delta_e:
            return y0, x0, height, width
    return 0, 0, photo.shape[1], photo.shape[2]


def split_bands(maps: np.ndarray, sigma: float, wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) frequency parts of `maps [C, H, W]`: a Gaussian of `sigma` texels (periodic or mirrored)."""
    low = gaussian_filter(maps, (0, sigma, sigma), mode="wrap" if wrap else "mirror")
    return low, maps - low


def typical_wrap(tile: np.ndarray, axis: int) -> int:
    """The shift along `axis` that puts the tile's wrap on its most ordinary line pair: the healed tile has no
    seam, and its wrap then also steps like the median neighbour pair (not, say, along a brick's smooth
    middle), so the tile boundary cannot be told from any other line."""
    x = np.clip(tile[:3], 0, 1) ** (1 / 2.2)
    other = tuple(a for a in range(3) if a != axis)
    following = np.roll(x, -1, axis=axis)
    steps = np.abs(following - x).mean(axis=other)
    da, db = x - x.mean(axis=other, keepdims=True), following - following.mean(axis=other, keepdims=True)
    corr = (da * db).sum(axis=other) / np.sqrt((da * da).sum(axis=other) * (db * db).sum(axis=other)).clip(1e-12)
    unusual = (np.abs(np.log(np.maximum(steps, 1e-9) / max(float(np.median(steps)), 1e-9)))
               + np.abs(np.log(np.maximum(corr, 1e-3) / max(float(np.median(corr)), 1e-3))))
    pair = int(np.argmin(unusual))
    return -(pair + 1)  # np.roll by this makes line pair+1 the first and line pair the last


def make_tileable(maps: torch.Tensor, settings: TileSettings) -> tuple[torch.Tensor, dict[str, Any]]:
    """`maps [C, H, W]` (albedo first, then any height/roughness) made seamless when repeated, every channel
    by the same transform (module docstring); a swatch that already tiles comes back unchanged."""
    ratios, novelty = wrap_step_ratios(maps), wrap_novelty(maps)
    info: dict[str, Any] = {"wrap_step_ratio_before": [round(r, 3) for r in ratios],
                            "wrap_novelty": [round(r, 3) for r in novelty]}
    h, w = maps.shape[-2:]
    band = max(2, round(settings.band_fraction * min(h, w)))
    if not settings.enabled or max(novelty) <= settings.identity_novelty or min(h, w) < 4 * band + 4:
        return maps, {**info, "method": "identity"}
    photo = maps.double().numpy()
    y0, x0, height, width = period_span(photo, settings.min_period_fraction)
    sigma = max(1.0, band / 2)
    # across the columns' wrap, on every row of the photo (the rows' wrap is healed next, from these rows)
    rows = np.roll(photo[:, :, x0:x0 + width], width // 2, axis=2)
    palette = photo[:3].reshape(3, -1)
    rows, across_columns = heal_vertical_seam(rows, photo, band, closed=False, sigma=sigma, palette=palette)
    rows = np.roll(rows, -(width // 2), axis=2)
    tile = np.roll(rows[:, y0:y0 + height], height // 2, axis=1).transpose(0, 2, 1)
    tile, across_rows = heal_vertical_seam(tile, rows.transpose(0, 2, 1), band, closed=True, sigma=sigma,
                                           palette=palette)
    work = np.roll(tile.transpose(0, 2, 1), -(height // 2), axis=1)
    shift = (typical_wrap(work, 1), typical_wrap(work, 2)) if settings.typical_wrap else (0, 0)
    work = np.roll(work, shift, axis=(1, 2))
    out = torch.from_numpy(work).to(maps.dtype)
    out = torch.cat([out[:3].clamp(0, 1), out[3:]])
    info.update(method="period trim, min-error cuts", band=band, kept=[y0, x0, height, width], shift=list(shift),
                across_columns=across_columns, across_rows=across_rows,
                wrap_step_ratio_after=[round(r, 3) for r in wrap_step_ratios(out)])
    return out.contiguous(), info
