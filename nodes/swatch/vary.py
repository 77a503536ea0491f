"""`repeat: vary` (issue 25 item 4): a tileable swatch turned into a larger tile that does not visibly repeat.

The result is a periodic tile of K x K swatch periods (its metres K times the swatch's, so `texture.project`
lays it unchanged at its real size and it repeats only every K swatches). It is quilted from the swatch
itself: a grid of m x m cells per swatch period, each cell a copy of the (periodic) swatch shifted by its
own offset, the cells stitched along minimum-error cuts (Efros & Freeman 2001; the cut is the dynamic
programming path `tileable` uses). Why quilting and not Heitz & Neyret's histogram-preserving blending
(2018, the real-time reference): blending two shifted copies of a strongly structured swatch (bricks,
flagstones) shows both at once, ghosted joints and halved contrast, and it invents colours; a cut copies
texels, so every texel is one of the swatch's and the structure holds up to the cuts.

Choosing an offset: every offset of the swatch is scored at once (the squared difference in the bands the
cell shares with its placed neighbours, by FFT correlation over the swatch's torus) and one is drawn among
those within `tolerance` of the best, which keeps the swatch's own lattice (brick courses line up). Offsets
near a placed neighbour's own (which would just continue it: the exact repeat) and near the offsets of
the cells one swatch period away (which would repeat at the swatch's period) are excluded. The output
tiles at its own period: cells, bands and cuts all wrap around it.

Every map (albedo, height, roughness, stacked as channels) takes the same offsets and the same cuts; the
costs read the albedo only. Seeded: same swatch and seed, same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nodes.measures.colour import mean_colour_delta_e76
from nodes.measures.distances import structure_distance

from .tileable import _closed_min_path, _min_path


@dataclass(frozen=True)
class VarySettings:
    periods: int = 4  # K: the result spans K x K swatch periods (it repeats every K swatches)
    # m: cells per swatch period along each axis, the first of these whose result correlates at most
    # `max_autocorrelation` at the swatch's period (else the last). 1 keeps more of each stone whole, but on
    # roof tiles it measured 0.67-0.69 there (> 0.6), 2 gives 0.56-0.58
    cells_per_period: tuple[int, ...] = (1, 2)
    max_autocorrelation: float = 0.45
    overlap_fraction: float = 0.4  # half-width of the cut band around each cell boundary, of a cell
    tolerance: float = 0.1  # an offset is drawn among those scoring within this share of the best
    min_jump: float = 0.2  # excluded: offsets within this share of the swatch of a neighbour's (continuations)


def _bounds(total: int, cells: int) -> np.ndarray:
    return np.round(np.linspace(0, total, cells + 1)).astype(np.int64)


def _gather(maps: np.ndarray, ys: np.ndarray, xs: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """`maps [C, H, W]` read at output rows `ys` / columns `xs` (broadcast grids) shifted by per-texel offsets."""
    h, w = maps.shape[-2:]
    return maps[:, (ys + oy) % h, (xs + ox) % w]


def _correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cyclic correlation over the last two axes: out[o] = sum_q a[q] * b[q + o] (summed over leading axes)."""
    spectrum = np.conj(np.fft.rfft2(a)) * np.fft.rfft2(b)
    return np.fft.irfft2(spectrum.reshape(-1, *spectrum.shape[-2:]).sum(0), s=a.shape[-2:])


class _Quilt:
    """The cell grid of one result and the offsets chosen so far."""

    def __init__(self, albedo: np.ndarray, settings: VarySettings, cells_per_period: int,
                 rng: np.random.Generator) -> None:
        self.albedo = albedo  # [3, H, W] gamma'd: what the costs compare
        self.h, self.w = albedo.shape[-2:]
        self.s = settings
        self.m = cells_per_period
        self.n = settings.periods * cells_per_period
        self.out_h, self.out_w = settings.periods * self.h, settings.periods * self.w
        self.by, self.bx = _bounds(self.out_h, self.n), _bounds(self.out_w, self.n)
        cell = min(self.h, self.w) / cells_per_period
        self.ov = max(1, round(settings.overlap_fraction * cell))
        self.offsets: dict[tuple[int, int], tuple[int, int]] = {}
        self.rng = rng
        gy = np.abs(np.roll(albedo, -1, 1) - albedo).sum(0) + np.abs(albedo - np.roll(albedo, 1, 1)).sum(0)
        gx = np.abs(np.roll(albedo, -1, 2) - albedo).sum(0) + np.abs(albedo - np.roll(albedo, 1, 2)).sum(0)
        self.gradient = (gy + gx)[None] / 4  # the swatch's local contrast (it wraps)
        self.edge_floor = float(np.median(self.gradient)) + 1e-6

    def _band_error(self, rows: np.ndarray, cols: np.ndarray, other: tuple[int, int]) -> np.ndarray:
        """Squared difference, per candidate offset, between the swatch shifted by the offset and the placed
        cell with offset `other`, over the band of output texels rows x cols (smaller than the swatch)."""
        target = _gather(self.albedo, rows[:, None], cols[None, :], *other)
        canvas = np.zeros_like(self.albedo)
        mask = np.zeros((1, self.h, self.w))
        ry, rx = (rows % self.h)[:, None], (cols % self.w)[None, :]
        canvas[:, ry, rx] = target
        mask[:, ry, rx] = 1.0
        # sum_q M(q) S(q+o)^2 - 2 sum_q T(q) S(q+o) + sum T^2
        return (_correlate(mask, self.albedo ** 2) - 2 * _correlate(canvas, self.albedo) + (target ** 2).sum())

    def _neighbour_bands(self, i: int, j: int) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
        """(rows, cols, offset) of the bands cell (i, j) shares with placed cells, around the output's wrap."""
        n, ov, by, bx = self.n, self.ov, self.by, self.bx
        rows, cols = np.arange(by[i], by[i + 1]), np.arange(bx[j], bx[j + 1])
        sides = [((i, j - 1), rows, np.arange(bx[j] - ov, bx[j] + ov)),
                 ((i - 1, j), np.arange(by[i] - ov, by[i] + ov), cols),
                 ((i, j + 1), rows, np.arange(bx[j + 1] - ov, bx[j + 1] + ov)),
                 ((i + 1, j), np.arange(by[i + 1] - ov, by[i + 1] + ov), cols)]
        out = []
        for (ci, cj), r, c in sides:
            key = (ci % n, cj % n)
            if key in self.offsets and key != (i, j):
                out.append((r, c, self.offsets[key]))
        return out

    def _excluded(self, i: int, j: int) -> np.ndarray:
        """Offsets [H, W] too near a neighbour's (a continuation) or a cell's one swatch period away."""
        n, m = self.n, self.m
        near = [(i + d * di, j + d * dj) for d in (1, m) for di, dj in ((0, -1), (0, 1), (-1, 0), (1, 0))]
        dy = np.arange(self.h)[:, None]
        dx = np.arange(self.w)[None, :]
        out = np.zeros((self.h, self.w), dtype=bool)
        for ci, cj in near:
            key = (ci % n, cj % n)
            if key == (i, j) or key not in self.offsets:
                continue
            oy, ox = self.offsets[key]
            ey, ex = (dy - oy) % self.h, (dx - ox) % self.w
            out |= ((np.minimum(ey, self.h - ey) / self.h) ** 2
                    + (np.minimum(ex, self.w - ex) / self.w) ** 2) < self.s.min_jump ** 2
        return out

    def place(self, i: int, j: int) -> None:
        bands = self._neighbour_bands(i, j)
        excluded = self._excluded(i, j)
        if not bands:
            error = self.rng.random((self.h, self.w))  # the first cell: any offset
        else:
            error = sum(self._band_error(r, c, o) for r, c, o in bands)
        error = np.where(excluded, np.inf, error)
        best = float(error.min())
        if not math.isfinite(best):  # every offset excluded (a tiny swatch): take any
            error, best = np.zeros_like(error), 0.0
        pool = np.flatnonzero(error <= best + self.s.tolerance * abs(best) + 1e-9)
        pick = int(pool[self.rng.integers(len(pool))])
        self.offsets[(i, j)] = (pick // self.w, pick % self.w)

    def offset_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Every cell placed in raster order; (row offsets [n, n], column offsets [n, n])."""
        for i in range(self.n):
            for j in range(self.n):
                self.place(i, j)
        oy = np.array([[self.offsets[(i, j)][0] for j in range(self.n)] for i in range(self.n)])
        ox = np.array([[self.offsets[(i, j)][1] for j in range(self.n)] for i in range(self.n)])
        return oy, ox

    def _cost(self, ys: np.ndarray, xs: np.ndarray, a: tuple[np.ndarray, np.ndarray],
              b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Where a cut between two offset maps shows, over the band rows ys x cols xs: their squared (gamma'd)
        colour difference over the local contrast (Kwatra et al. 2003), so cuts run along edges and joints."""
        pa, pb = _gather(self.albedo, ys, xs, *a), _gather(self.albedo, ys, xs, *b)
        return ((pa - pb) ** 2).sum(0) / (self._edges(ys, xs, a) + self._edges(ys, xs, b) + self.edge_floor)

    def _edges(self, ys: np.ndarray, xs: np.ndarray, offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.gradient[0, (ys + offsets[0]) % self.h, (xs + offsets[1]) % self.w]

    def strip(self, i: int, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
        """Cell columns [rows, out_w] of row strip i over its rows widened by the band either side, the
        cells of the row joined along minimum-error vertical cuts (the last one around the wrap)."""
        n, ov = self.n, self.ov
        ys = np.arange(self.by[i] - ov, self.by[i + 1] + ov)[:, None]
        cells = np.searchsorted(self.bx, np.arange(self.out_w), side="right") - 1
        out = np.broadcast_to(cells, (ys.shape[0], self.out_w)).copy()
        for j in range(n):
            left = (j - 1) % n
            xs = np.arange(self.bx[j] - ov, self.bx[j] + ov)
            path = _min_path(self._cost(ys, xs[None, :], (oy[i, left], ox[i, left]), (oy[i, j], ox[i, j])))
            take_left = np.arange(xs.size)[None, :] < path[:, None]
            out[:, xs % self.out_w] = np.where(take_left, left, j)
        return out

    def cell_map(self, oy: np.ndarray, ox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell row, cell column) of every output texel: the row strips joined along minimum-error
        horizontal cuts that close around the output's width (and the last one around its height)."""
        n, ov = self.n, self.ov
        strips = [self.strip(i, oy, ox) for i in range(n)]
        rows = np.zeros((self.out_h, self.out_w), dtype=np.int64)
        cols = np.zeros((self.out_h, self.out_w), dtype=np.int64)
        x = np.arange(self.out_w)[None, :]
        for i in range(n):  # core rows of each strip
            core = np.arange(self.by[i] + ov, self.by[i + 1] - ov)
            rows[core] = i
            cols[core] = strips[i][2 * ov:2 * ov + core.size]
        for i in range(n):  # the band between strip i - 1 (above) and strip i
            up = (i - 1) % n
            ys = np.arange(self.by[i] - ov, self.by[i] + ov)[:, None]
            above, below = strips[up][-2 * ov:], strips[i][:2 * ov]
            cost = self._cost(ys, x, (oy[up, above], ox[up, above]), (oy[i, below], ox[i, below]))
            path = _closed_min_path(np.ascontiguousarray(cost.T))
            take_above = np.arange(2 * ov)[:, None] < path[None, :]
            rows[ys[:, 0] % self.out_h] = np.where(take_above, up, i)
            cols[ys[:, 0] % self.out_h] = np.where(take_above, above, below)
        return rows, cols


def vary_maps(maps: torch.Tensor, settings: VarySettings, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """`maps [C, H, W]` (albedo first, a tileable swatch) -> `[C, K*H, K*W]`, a tile that repeats only every K
    swatch periods, and diagnostics. Every channel takes the same offsets and cuts."""
    source = maps.detach().float().cpu().numpy().astype(np.float64)
    albedo = np.clip(source[:3], 0, 1) ** (1 / 2.2)  # costs in a gamma space, so dark detail counts
    for m in settings.cells_per_period:
        quilt = _Quilt(albedo, settings, m, np.random.default_rng(seed))
        oy, ox = quilt.offset_grid()
        rows, cols = quilt.cell_map(oy, ox)
        ys = np.arange(quilt.out_h)[:, None]
        xs = np.arange(quilt.out_w)[None, :]
        out = torch.from_numpy(_gather(source, ys, xs, oy[rows, cols], ox[rows, cols]).astype(np.float32))
        correlation = max(period_autocorrelation(out, (quilt.h, quilt.w)))
        if correlation <= settings.max_autocorrelation:
            break
    info = {"periods": settings.periods, "cells": quilt.n, "band": quilt.ov, "autocorrelation": correlation}
    return out.to(maps.dtype), info


LUMA = (0.2126, 0.7152, 0.0722)


def period_autocorrelation(image: torch.Tensor, period: tuple[int, int]) -> tuple[float, float]:
    """(along x, along y): the normalised autocorrelation of `image`'s zero-mean luminance at a lag of one
    swatch period (`period` = (rows, columns) in texels), over the texels that overlap (not wrapped, so it
    holds for any laid texture too). 1: the texture repeats exactly at that period; near 0: no repetition."""
    luma = (image[:3].float() * torch.tensor(LUMA)[:, None, None]).sum(0)

    def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).mean() / ((a * a).mean().sqrt() * (b * b).mean().sqrt()).clamp_min(1e-12))

    rows, cols = period
    return pearson(luma[:, :-cols], luma[:, cols:]), pearson(luma[:-rows], luma[rows:])


OTHER_PHASE = (0.61, 0.37)  # (rows, columns) fractions of the swatch, as the acceptance's ideal at another phase


def vary_measures(swatch: torch.Tensor, result: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Issue 25 item 4's measures of `result` (a texture laid from `swatch` at one texel per swatch texel,
    at least two swatches wide) in the swatch's own 2D space: the autocorrelation at the swatch's period
    (max of x and y), the structure distance to the swatch repeated exactly (the ideal) beside the ideal at
    another phase's (bound: 2 x that + 0.01), and the mean colour's ΔE76 from the swatch's."""
    h, w = swatch.shape[-2:]
    reps = (math.ceil(result.shape[-2] / h), math.ceil(result.shape[-1] / w))
    ideal = swatch[:3].float().repeat(1, *reps)[:, :result.shape[-2], :result.shape[-1]]
    phase = torch.roll(swatch[:3].float(), (round(OTHER_PHASE[0] * h), round(OTHER_PHASE[1] * w)), (1, 2))
    phase = phase.repeat(1, *reps)[:, :result.shape[-2], :result.shape[-1]]
    ones = torch.ones(1, 1, *ideal.shape[-2:])

    def structure(image: torch.Tensor) -> float:
        return structure_distance(image[None, :3].float(), ones, ideal[None], ones, seed=seed)

    ideal_phase = structure(phase)
    return {"autocorrelation": max(period_autocorrelation(result, (h, w))), "structure": structure(result),
            "ideal_phase": ideal_phase, "structure_bound": 2 * ideal_phase + 0.01,
            "delta_e": mean_colour_delta_e76(result[:3], None, swatch[:3])}
