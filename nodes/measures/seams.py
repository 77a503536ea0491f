"""Seam geometry: the colour step where a texture is cut.

UV seams of a mesh (issue 13 item 5): `seam_ratio` compares colour differences of texel pairs across UV
seams with those inside charts (`seam_probe` draws the pairs once for many atlases of one layout).

Tile seams of a swatch laid in `tile` mode (issue 25 item 2): `tile_seams`. The result is registered
against the swatch tiled at its real size (the phase that best correlates the result, folded modulo the
period, with the swatch at the atlas's density), which gives the tile boundaries in both directions. At
each boundary, between the two texel lines either side:
- (a) `correlation`: their correlation over the median correlation of adjacent lines elsewhere (~1 seamless);
- (b) `step`: their mean absolute step over the median step between adjacent lines (~1 seamless; a line: >1);
- (c) `band`: the mean step over the 6 line pairs either side over the same median (< 1: blurred away).
A direction with no texture across it (stripes along it, flat colour: the median neighbour step ~0) has no
boundaries to judge and reads NaN; clean procedural swatches with large flat areas give undefined ratios.
It reads an atlas whose chart is axis-aligned with the swatch (a floor or wall quad, as the acceptance
scenes are): the period (`tile_period`) is `size` times the atlas's texel density along both atlas axes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

BAND_LINES = 6


@dataclass(frozen=True)
class SeamReport:
    """Colour differences of texel pairs across UV seams and inside charts (see `seam_ratio`)."""

    ratio: float
    seam_difference: float
    inside_difference: float
    seam_pairs: int
    inside_pairs: int


def _triangle_frames(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, size: tuple[int, int]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per face: unit normal `[F, 3]`, 3-D area `[F]` and texel length `[F]` (surface metres per atlas texel;
    0 where the face has no UV area)."""
    p = positions[faces].double()
    cross = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
    area = 0.5 * cross.norm(dim=1)
    t = uvs[faces].double() * torch.tensor([size[1], size[0]], dtype=torch.float64)
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    uv_area = 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]).abs()
    texel = torch.where(uv_area > 1e-12, (area / uv_area.clamp_min(1e-12)).sqrt(), torch.zeros_like(area))
    return cross / area.clamp_min(1e-30)[:, None] / 2, area, texel


def _uv_at(points: torch.Tensor, face: torch.Tensor, positions: torch.Tensor, faces: torch.Tensor,
           uvs: torch.Tensor) -> torch.Tensor:
    """UV `[N, 2]` of `points` `[N, 3]` (in the planes of faces `face` `[N]`) by barycentrics.

    A point a little outside its (small) triangle takes the triangle's affine UV map extended, which
    inside a chart lands where the neighbouring triangles map it, up to the chart's distortion.
    """
    tri = positions[faces[face]].double()
    v0, v1, v2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], points - tri[:, 0]
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    denom = (d00 * d11 - d01 * d01).clamp_min(1e-30)
    bv, bw = (d11 * d20 - d01 * d21) / denom, (d00 * d21 - d01 * d20) / denom
    bary = torch.stack([1 - bv - bw, bv, bw], 1)
    return (bary[:, :, None] * uvs[faces[face]].double()).sum(1)


def _sample_atlas(atlas: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear colours `[N, 3]` of `atlas` `[3, H, W]` at glTF UVs `[N, 2]` (texel row = v·H)."""
    grid = (uv.float() * 2 - 1)[None, None]
    return F.grid_sample(atlas[None].float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0, :, 0].T


def _edge_pairs(positions: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-edges `[E, 2]` (face·3 + corner) of the edges shared by exactly two faces, matched by rounded position."""
    span = float((positions.max(0).values - positions.min(0).values).norm()) or 1.0
    keys = torch.round(positions.double() / (span * 1e-6)).long()
    pid = torch.unique(keys, dim=0, return_inverse=True)[1]
    a, b = pid[faces], pid[faces.roll(-1, 1)]
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    key = lo * (int(pid.max()) + 1) + hi
    order = key.argsort(stable=True)
    k = key[order]
    same = k[1:] == k[:-1]
    before = torch.cat([torch.tensor([False]), same[:-1]])
    after = torch.cat([same[1:], torch.tensor([False])])
    first = torch.nonzero(same & ~before & ~after).flatten()  # runs of exactly two half-edges
    return torch.stack([order[first], order[first + 1]], 1), pid


def _seam_edges(pairs: torch.Tensor, pid: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, tol: float
                ) -> torch.Tensor:
    """Mask `[E]` of the shared edges whose two faces give an end point different UVs (more than `tol`)."""
    fa, ka, fb, kb = pairs[:, 0] // 3, pairs[:, 0] % 3, pairs[:, 1] // 3, pairs[:, 1] % 3
    a0, a1 = faces[fa, ka], faces[fa, (ka + 1) % 3]
    b0, b1 = faces[fb, kb], faces[fb, (kb + 1) % 3]
    flip = pid[a0] != pid[b0]
    b0, b1 = torch.where(flip, b1, b0), torch.where(flip, b0, b1)
    du = torch.maximum((uvs[a0] - uvs[b0]).abs().amax(1), (uvs[a1] - uvs[b1]).abs().amax(1))
    return du > tol


def _step_inward(x: torch.Tensor, face: torch.Tensor, corner: torch.Tensor, positions: torch.Tensor,
                 faces: torch.Tensor, normals: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """`x` on edge `corner` of `face`, moved `distance` into the face, perpendicular to the edge in its plane."""
    p0, p1 = positions[faces[face, corner]].double(), positions[faces[face, (corner + 1) % 3]].double()
    third = positions[faces[face, (corner + 2) % 3]].double()
    perp = torch.cross(normals[face], p1 - p0, dim=1)
    perp = perp / perp.norm(dim=1, keepdim=True).clamp_min(1e-30)
    perp = torch.where(((third - p0) * perp).sum(1, keepdim=True) < 0, -perp, perp)
    return x + distance[:, None] * perp


def _seam_uv_pairs(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, seams: torch.Tensor,
                   frames: tuple[torch.Tensor, torch.Tensor, torch.Tensor], samples: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """UVs `[N, 2]` x 2 of point pairs one texel either side of seam edges (`seams` `[S, 2]` half-edges)."""
    normals, _, texel = frames
    fa, ka, fb, kb = seams[:, 0] // 3, seams[:, 0] % 3, seams[:, 1] // 3, seams[:, 1] % 3
    p0, p1 = positions[faces[fa, ka]].double(), positions[faces[fa, (ka + 1) % 3]].double()
    pick = torch.multinomial((p1 - p0).norm(dim=1).float(), samples, replacement=True, generator=generator)
    t = torch.rand(samples, generator=generator, dtype=torch.float64)[:, None]
    x = p0[pick] + t * (p1 - p0)[pick]
    ends = []
    for face, corner in ((fa[pick], ka[pick]), (fb[pick], kb[pick])):
        q = _step_inward(x, face, corner, positions, faces, normals, texel[face])
        ends.append(_uv_at(q, face, positions, faces, uvs))
    return ends[0], ends[1]


def _chart_labels(faces: torch.Tensor, vertices: int) -> torch.Tensor:
    """Chart id per face: faces sharing a vertex index (hence a UV) are in one chart."""
    n = faces.shape[0]
    rows = torch.arange(n).repeat_interleave(3).numpy()
    graph = coo_matrix((torch.ones(3 * n).numpy(), (rows, faces.reshape(-1).numpy() + n)), shape=(n + vertices,) * 2)
    return torch.from_numpy(connected_components(graph, directed=False)[1][:n]).long()


def _inside_uv_pairs(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor,
                     candidates: torch.Tensor, frames: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """UVs `[N, 2]` x 2 of point pairs two texel lengths apart inside one triangle of `candidates` `[F]` (bool).

    Triangles are drawn by area; 4× `samples` candidate pairs are drawn and those with both points
    inside their triangle (away from its edges) kept, at most `samples`.
    """
    normals, area, texel = frames
    weights = (area * candidates).float()
    if float(weights.sum()) <= 0:
        return None
    n = 4 * samples
    face = torch.multinomial(weights, n, replacement=True, generator=generator)
    r = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    s = r[:, 0].sqrt()
    bary = torch.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], 1)
    tri = positions[faces[face]].double()
    mid = (bary[:, :, None] * tri).sum(1)
    e1 = (tri[:, 1] - tri[:, 0]) / (tri[:, 1] - tri[:, 0]).norm(dim=1, keepdim=True)
    e2 = torch.cross(normals[face], e1, dim=1)
    angle = 2 * math.pi * r[:, 2:]
    step = texel[face][:, None] * (angle.cos() * e1 + angle.sin() * e2)
    ends = [mid + step, mid - step]
    inside = torch.ones(n, dtype=torch.bool)
    for q in ends:
        inside &= _inside_triangle(q, tri)
    keep = torch.nonzero(inside).flatten()[:samples]
    first, second = (_uv_at(q[keep], face[keep], positions, faces, uvs) for q in ends)
    return first, second


def _inside_triangle(q: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Whether points `q` `[N, 3]` (in the planes of `tri` `[N, 3, 3]`) lie inside their triangles."""
    normal = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    ok = torch.ones(q.shape[0], dtype=torch.bool)
    for i in range(3):
        edge = tri[:, (i + 1) % 3] - tri[:, i]
        ok &= (torch.cross(edge, q - tri[:, i], dim=1) * normal).sum(1) >= 0
    return ok


@dataclass(frozen=True)
class SeamProbe:
    """Where `seam_ratio` samples one mesh at one atlas size: the UV pairs across seams and inside charts.

    Everything but the colours depends on the mesh and the atlas size only, so candidates of one
    size are measured with one probe (same pairs, same numbers as `seam_ratio`) at the cost of two
    bilinear lookups each.
    """

    seam_pairs: tuple[torch.Tensor, torch.Tensor] | None  # None: the mesh has no seam edge
    inside_pairs: tuple[torch.Tensor, torch.Tensor] | None
    floor: float

    def measure(self, atlas: torch.Tensor) -> SeamReport:
        """The seam report of `atlas` `[3, H, W]` (of the probe's size)."""
        if self.seam_pairs is None:
            return SeamReport(1.0, 0.0, math.nan, 0, 0)
        seam = _pair_differences(atlas, self.seam_pairs)
        inside = _pair_differences(atlas, self.inside_pairs) if self.inside_pairs is not None else torch.zeros(0)
        s_mean = float(seam.mean())
        i_mean = float(inside.mean()) if inside.numel() else math.nan
        ratio = (s_mean + self.floor) / (i_mean + self.floor) if inside.numel() else math.nan
        return SeamReport(ratio, s_mean, i_mean, int(seam.numel()), int(inside.numel()))


def _pair_differences(atlas: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean-|ΔRGB| `[N]` over the three channels between the atlas's colours at two UV sets."""
    return (_sample_atlas(atlas, pairs[0]) - _sample_atlas(atlas, pairs[1])).abs().mean(1)


def seam_probe(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, size: tuple[int, int], *,
               seed: int = 0, samples: int = 4096, floor: float = 1.0 / 255.0) -> SeamProbe:
    """The sample pairs of `seam_ratio` for atlases of `size` (H, W)."""
    faces = faces.long()
    if faces.shape[0] == 0:
        return SeamProbe(None, None, floor)
    # Only the vertices these faces use: welding by position sorts them, and the faces of one instance
    # must not cost a sort of the whole scene's vertices.
    used, local = torch.unique(faces, return_inverse=True)
    positions, uvs, faces = positions[used], uvs[used], local.reshape(faces.shape)
    generator = torch.Generator().manual_seed(seed)
    frames = _triangle_frames(positions, faces, uvs, size)
    pairs, pid = _edge_pairs(positions, faces)
    seams = pairs[_seam_edges(pairs, pid, faces, uvs, 0.5 / max(size))]
    texel = frames[2]
    seams = seams[(texel[seams[:, 0] // 3] > 0) & (texel[seams[:, 1] // 3] > 0)]
    if seams.shape[0] == 0:
        return SeamProbe(None, None, floor)
    seam = _seam_uv_pairs(positions, faces, uvs, seams, frames, samples, generator)
    charts = _chart_labels(faces, positions.shape[0])
    touching = torch.zeros(int(charts.max()) + 1, dtype=torch.bool)
    touching[charts[seams.reshape(-1) // 3]] = True
    inside = _inside_uv_pairs(positions, faces, uvs, touching[charts], frames, samples, generator)
    return SeamProbe(seam, inside, floor)


def seam_ratio_measure(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor
                       ) -> Callable[[torch.Tensor], float]:
    """`atlas -> seam_ratio(...).ratio` for one mesh, with one probe per atlas size (candidates of a stage
    share their size: the seam geometry is built once, the numbers are `seam_ratio`'s)."""
    probes: dict[tuple[int, int], SeamProbe] = {}

    def ratio(atlas: torch.Tensor) -> float:
        size = (int(atlas.shape[-2]), int(atlas.shape[-1]))
        if size not in probes:
            probes[size] = seam_probe(positions, faces, uvs, size)
        return probes[size].measure(atlas.float()).ratio

    return ratio


def seam_ratio(positions: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, atlas: torch.Tensor, *,
               seed: int = 0, samples: int = 4096, floor: float = 1.0 / 255.0) -> SeamReport:
    """Issue 13 item 5: colour difference across UV seams relative to inside charts.

    The mesh's vertices are split at UV seams (one UV per vertex, glTF convention: texel row = v·H).
    A seam edge is an edge two triangles share by position (vertices matched by position rounded to
    1e-6 of the mesh's size) but not by UV (an end point's UVs differ by more than half a texel).
    Seam pairs: points drawn along seam edges (by length), each stepped one texel's surface length
    (that triangle's) into each of the two triangles, perpendicular to the edge in its plane; their
    UVs by barycentrics, colours by bilinear sampling. Inside pairs: points two texel lengths apart
    inside one triangle, in a random direction, over the charts that touch a seam (by area). The
    difference is the mean absolute linear-RGB difference over the three channels.
    `ratio = (seam + floor) / (inside + floor)`: `floor` (one 8-bit step) keeps a flat or smooth
    texture, whose differences are invisible, at ≈ 1 instead of dividing noise by noise. No seam
    edge: ratio 1.0 and `seam_pairs` 0. Deterministic for a given `seed`.
    """
    return seam_probe(positions, faces, uvs, tuple(atlas.shape[-2:]), seed=seed, samples=samples,
                      floor=floor).measure(atlas)


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

    def _judged(self) -> list[DirectionSeams]:
        """The directions with boundaries to judge (a direction without texture across it has none)."""
        judged = [d for d in (self.across_columns, self.across_rows) if d.boundaries > 0]
        return judged or [DirectionSeams(math.nan, math.nan, math.nan, 0)]

    @property
    def correlation(self) -> float:
        return min(d.correlation for d in self._judged())

    @property
    def step(self) -> float:
        """The direction whose step ratio is farther from 1 (in log)."""
        return max((d.step for d in self._judged()), key=lambda s: abs(math.log(max(s, 1e-9))) if s == s else math.inf)

    @property
    def band(self) -> float:
        return min(d.band for d in self._judged())

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
    flat = ((da * da).sum((0, 1)) < 1e-8) | ((db * db).sum((0, 1)) < 1e-8)
    corr[flat] = math.nan  # a constant line (a stripe along it) has no correlation to speak of
    return corr.numpy(), step.numpy()


def _direction(values: torch.Tensor, mask: torch.Tensor, origin: int, period: int) -> DirectionSeams:
    """Seam ratios at the boundaries between columns `origin - 1 + k * period` and the next."""
    corr, step = _line_pairs(values, mask)
    pairs = np.arange(len(step))
    boundary_pairs = np.arange((origin - 1) % period, len(step), period)
    near = np.min(np.abs(pairs[:, None] - boundary_pairs[None, :]), axis=1) <= 2 if len(boundary_pairs) else \
        np.zeros(len(step), dtype=bool)
    elsewhere = ~near & np.isfinite(step)
    median_step = float(np.median(step[elsewhere])) if elsewhere.any() else math.nan
    if not median_step > 1e-4:  # no texture across this direction (stripes along it): nothing to judge
        return DirectionSeams(math.nan, math.nan, math.nan, 0)
    usable = elsewhere & np.isfinite(corr)
    median_corr = float(np.median(corr[usable])) if usable.any() else math.nan
    a, b, c = [], [], []
    for p in boundary_pairs:
        lo, hi = p - BAND_LINES, p + BAND_LINES
        if lo < 0 or hi >= len(step) or not np.isfinite(step[p]) or not np.isfinite(step[lo:hi + 1]).all():
            continue
        a.append(corr[p] / max(median_corr, 1e-9) if np.isfinite(corr[p]) and np.isfinite(median_corr) else 1.0)
        b.append(step[p] / max(median_step, 1e-9))
        c.append(float(np.mean(step[lo:hi + 1])) / max(median_step, 1e-9))
    if not a:
        return DirectionSeams(math.nan, math.nan, math.nan, 0)
    return DirectionSeams(float(np.mean(a)), float(np.mean(b)), float(np.mean(c)), len(a))


def tile_seams(image: torch.Tensor, mask: torch.Tensor, swatch: torch.Tensor, period: tuple[int, int]
               ) -> TileSeams:
    """The tile-seam ratios (module docstring) of `image [3, H, W]` (atlas, `mask [H, W]`), where the swatch
    repeats every `period = (rows, columns)` texels."""
    return tile_seams_at(image, mask, register_tiles(image, mask, swatch, period), period)


def tile_seams_at(image: torch.Tensor, mask: torch.Tensor, origin: tuple[int, int], period: tuple[int, int]
                  ) -> TileSeams:
    """`tile_seams` where the swatch's top-left corner is known to land at texel `origin = (row, column)`
    (modulo the period): an image resampled in the swatch's own frame needs no registration."""
    (oy, ox), (py, px) = origin, period
    values = _perceptual(image)
    columns = _direction(values, mask, ox, px)
    rows = _direction(values.transpose(1, 2), mask.T, oy, py)
    return TileSeams(across_columns=columns, across_rows=rows, origin=(oy, ox))


def tile_period(material_albedo: torch.Tensor, material_size: float, texels_per_metre: float) -> tuple[int, int]:
    """(rows, columns) in texels over which a material of `material_size` metres repeats at a density."""
    width = material_size * texels_per_metre
    return max(2, round(width * material_albedo.shape[-2] / material_albedo.shape[-1])), max(2, round(width))
