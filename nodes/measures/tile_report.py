"""Issue 25 item 2 on any texturing output: the tile-seam ratios of one instance laid in `tile` mode.

`tile_seams` reads an image whose rows and columns follow the swatch's axes. An atlas rarely does (a
box side's chart may be rotated or scaled in UV space), so the atlas is first resampled into the swatch's
own frame over the instance's largest chart: per chart `s = linear @ uv + offset` in metres (x right,
y down, `nodes.texture.charts`), and texture.project looks the swatch up at `s + phase`, so the swatch's
edges lie where `s + phase` is a whole number of swatch widths (heights). A regular grid of `s` over the
chart's extent, at the atlas's own density there and with a step that divides the swatch's size exactly,
puts every tile boundary between two grid lines at a known origin: no registration is needed, so the
measure holds for any repeat (`exact`, `vary`) and after de-lighting. Each grid point takes the atlas's
bilinear colour at `uv = linear⁻¹ (s - offset)`, and the mask keeps the points inside the chart's faces.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nodes.render.uv_raster import uv_island_mask
from nodes.texture.charts import Charts
from nodes.texture.project import triplanar_charts
from nodes.types import WorldScale

from .seams import BAND_LINES, DirectionSeams, tile_seams_at

# Issue 25's bounds per ratio: (a) correlation, (b) step, (c) band.
BOUNDS = {"a": (0.85, math.inf), "b": (0.67, 1.5), "c": (0.7, math.inf)}
MIN_PERIODS = 2.0  # a direction the chart spans fewer swatch repeats of has no boundary to judge
MIN_PERIOD_TEXELS = 2 * BAND_LINES + 2  # (c) reads 6 lines either side: a shorter period overlaps the next boundary


def swatch_frame(charts: Charts, chart: int, atlas: torch.Tensor, atlas_mask: torch.Tensor, scale: WorldScale
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
    """The atlas `[3, H, W]` resampled over `chart` in the swatch's frame: image `[3, R, C]`, mask `[R, C]`,
    the origin (row, column) of a tile boundary and the period (rows, columns) in grid lines."""
    h, w = atlas.shape[-2:]
    density = math.sqrt(float(charts.uv_area[chart]) * h * w / max(float(charts.area[chart]), 1e-20))
    width_m, height_m = scale.swatch_size_m
    period = (max(2, round(height_m * density)), max(2, round(width_m * density)))
    step = np.array([width_m / period[1], height_m / period[0]])  # metres per grid line, (x, y)
    linear, offset = charts.linear[chart], charts.offset[chart] + np.asarray(scale.phase, dtype=np.float64)
    faces = charts.faces[charts.chart == chart]
    s = charts.uvs @ linear.T + offset  # every vertex through this chart's map; only its own faces are used
    corners = s[np.unique(faces)]
    start = np.floor(corners.min(0) / step)  # grid lines from the start, so boundaries are whole lines
    count = np.ceil(corners.max(0) / step - start).astype(np.int64) + 1  # (columns, rows)
    origin = (int(-start[1]) % period[0], int(-start[0]) % period[1])
    grid = (s / step - start) / count  # the grid's [0, 1]² (the uv_raster convention)
    inside = uv_island_mask(torch.from_numpy(grid), torch.from_numpy(faces), (int(count[1]), int(count[0])))
    xs = (start[0] + np.arange(count[0]) + 0.5) * step[0]
    ys = (start[1] + np.arange(count[1]) + 0.5) * step[1]
    inverse = torch.from_numpy(np.linalg.inv(linear))
    dx, dy = torch.from_numpy(xs - offset[0])[None, :], torch.from_numpy(ys - offset[1])[:, None]
    u, v = inverse[0, 0] * dx + inverse[0, 1] * dy, inverse[1, 0] * dx + inverse[1, 1] * dy  # [R, C] each (affine)
    where = (torch.stack([u, v], -1) * 2 - 1).float()[None]
    image = F.grid_sample(atlas[None].float(), where, mode="bilinear", padding_mode="border", align_corners=False)[0]
    covered = F.grid_sample(atlas_mask[None, None].float(), where, mode="nearest", padding_mode="zeros",
                            align_corners=False)[0, 0] > 0.5
    return image, inside & covered, origin, period


def _direction_row(seams: DirectionSeams, spans: float) -> dict[str, Any] | str:
    """One direction's ratios with their verdicts, or why it cannot be judged."""
    if spans < MIN_PERIODS:
        return f"not measurable: the largest chart spans {spans:.2g} swatch repeats (< {MIN_PERIODS:g})"
    if seams.boundaries == 0:
        return "not measurable: no texture across this direction, or no boundary with 6 lines either side"
    ratios = {"a": seams.correlation, "b": seams.step, "c": seams.band}
    row: dict[str, Any] = {k: round(float(v), 4) if math.isfinite(v) else None for k, v in ratios.items()}  # JSON
    row["boundaries"] = seams.boundaries
    row["pass"] = all(BOUNDS[k][0] <= v <= BOUNDS[k][1] for k, v in ratios.items())
    return row


def swatch_tiled(swatch: torch.Tensor, shape: tuple[int, int], origin: tuple[int, int], period: tuple[int, int]
                 ) -> torch.Tensor:
    """The swatch `[3, h, w]` at the period's size repeated over `shape` (rows, columns) with its top-left corner
    at `origin`: what a perfectly laid texture shows in the frame."""
    small = F.interpolate(swatch.float()[None, :3], size=period, mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    rows = (torch.arange(shape[0]) - origin[0]) % period[0]
    cols = (torch.arange(shape[1]) - origin[1]) % period[1]
    return small[:, rows][:, :, cols]


def tile_report(charts: Charts, atlas: torch.Tensor, atlas_mask: torch.Tensor, scale: WorldScale | None,
                swatch: torch.Tensor | None = None) -> dict[str, Any]:
    """Issue 25's tile-seam ratios of one instance's albedo atlas over its largest chart: per direction
    (`x`: boundaries between columns, `y`: between rows) a, b, c, the boundaries read and whether all three
    are within `BOUNDS`, or a string saying why the direction is not measurable.

    `swatch` (the image laid, spanning the scale's swatch size): the same ratios of the swatch itself repeated
    in the same frame and mask, under `swatch`: a pattern with an edge on the swatch's own border (grout,
    a stripe) reads as a seam however well it is laid, and this says so."""
    if scale is None or scale.mode != "tile":
        return {"measurable": False, "why": "not a swatch laid in tile mode at its real size"}
    if charts.count == 0:
        return {"measurable": False, "why": "no faces"}
    chart = int(np.argmax(charts.area))
    if triplanar_charts(charts, scale.projection)[chart]:
        return {"measurable": False, "why": "the largest chart is laid triplanar (no swatch frame)"}
    image, mask, origin, period = swatch_frame(charts, chart, atlas, atlas_mask, scale)
    if min(period) < MIN_PERIOD_TEXELS:
        return {"measurable": False, "why": f"the swatch repeats every {min(period)} texels (< {MIN_PERIOD_TEXELS})"}
    seams = tile_seams_at(image, mask, origin, period)
    rows, cols = mask.any(1).sum().item(), mask.any(0).sum().item()
    x = _direction_row(seams.across_columns, cols / period[1])
    y = _direction_row(seams.across_rows, rows / period[0])
    report = {"measurable": isinstance(x, dict) or isinstance(y, dict), "x": x, "y": y,
              "period_texels": [period[1], period[0]], "grid": [int(mask.shape[1]), int(mask.shape[0])]}
    if swatch is not None and report["measurable"]:
        ideal = tile_seams_at(swatch_tiled(swatch, tuple(mask.shape), origin, period), mask, origin, period)
        report["swatch"] = {"x": _direction_row(ideal.across_columns, cols / period[1]),
                            "y": _direction_row(ideal.across_rows, rows / period[0])}
    return report
