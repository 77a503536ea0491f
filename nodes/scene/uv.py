"""Texture space of one instance: is it usable as is, and if not, a new one.

An instance's UVs are kept exactly when they are a valid atlas: present,
finite, inside [0, 1] (tiled UVs repeat texels, which is overlap for a
per-instance atlas), not collapsed, and not overlapping within the instance.

Collapsed (issue 14): zero-area UV triangles cover no texel, so an all-zero
TEXCOORD_0 reads as "no overlap" and used to fail minutes later in `brdf`.
Each triangle's share of the UV area is compared with its share of the
surface area (`uv_density_ratio`); a triangle that gets less than
`COLLAPSED_DENSITY` (1%) of the mean texel density is collapsed. The UVs are
unwrapped when the collapsed triangles carry more than `COLLAPSED_TOLERANCE`
of the surface, when the total UV area is zero (UVs collapsed to a point or
a line) or when they cover fewer than `MIN_COVERED_TEXELS` texel centres of
the overlap grid. Measured on valid atlases (SheenChair's four parts, the
demo room's seven): no triangle below 1% density, so the rule leaves them
alone (and they stay bit-identical).

Overlap is measured by rasterizing the UV triangles at a modest resolution
and counting texel centres covered by more than one triangle; a small
tolerance absorbs texels on shared edges and numerical slivers.
"""
from __future__ import annotations

import numpy as np
import xatlas

OVERLAP_RESOLUTION = 256
OVERLAP_TOLERANCE = 0.01  # fraction of covered texels that may be covered twice
UV_RANGE_TOLERANCE = 1e-3
COLLAPSED_DENSITY = 0.01  # a triangle with < 1% of the mean texel density is collapsed
COLLAPSED_TOLERANCE = 0.02  # fraction of the surface that may be collapsed
MIN_COVERED_TEXELS = 64  # texel centres of the OVERLAP_RESOLUTION² grid (0.1%) an atlas must cover
MAX_CANDIDATES = 50_000_000  # (triangle, texel) tests per overlap check, bounds its time
CHUNK_CANDIDATES = 2_000_000  # tests per vectorised chunk, bounds its memory (~200 MB)


def uv_coverage_counts(uvs: np.ndarray, faces: np.ndarray, resolution: int = OVERLAP_RESOLUTION) -> np.ndarray:
    """How many triangles cover each texel centre of a `resolution`² grid over [0, 1]².

    A texel counts as covered when its centre is strictly inside a triangle
    (edge functions above a tiny epsilon), so neighbours sharing an edge do
    not both claim texels lying exactly on it. Vectorised over (triangle,
    texel-in-its-bounding-box) pairs in chunks of `CHUNK_CANDIDATES` (bounded
    memory); the resolution is lowered when the total number of pairs would
    exceed `MAX_CANDIDATES` (bounded time).
    """
    tri = uvs.astype(np.float64)[faces] * resolution - 0.5  # texel centres at integers
    lo = np.clip(np.floor(tri.min(axis=1)).astype(np.int64) + 1, 0, resolution - 1)
    hi = np.clip(np.ceil(tri.max(axis=1)).astype(np.int64) - 1, 0, resolution - 1)
    w = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    h = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    count = w * h
    total = int(count.sum())
    if total > MAX_CANDIDATES and resolution > 32:
        return uv_coverage_counts(uvs, faces, resolution // 2)
    counts = np.zeros(resolution * resolution, dtype=np.int64)
    ends = np.cumsum(count)
    first = 0
    while first < len(faces):
        # Triangles [first, last) whose pairs fit in one chunk (at least one triangle).
        budget = (ends[first - 1] if first else 0) + CHUNK_CANDIDATES
        last = max(int(np.searchsorted(ends, budget, side="right")), first + 1)
        counts += _chunk_counts(tri[first:last], lo[first:last], w[first:last], count[first:last], resolution)
        first = last
    return counts.reshape(resolution, resolution)


def _chunk_counts(tri: np.ndarray, lo: np.ndarray, w: np.ndarray, count: np.ndarray, resolution: int) -> np.ndarray:
    total = int(count.sum())
    if total == 0:
        return np.zeros(resolution * resolution, dtype=np.int64)
    tri_index = np.repeat(np.arange(len(tri)), count)
    local = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    x = lo[tri_index, 0] + local % w[tri_index]
    y = lo[tri_index, 1] + local // w[tri_index]
    a, b, c = tri[tri_index, 0], tri[tri_index, 1], tri[tri_index, 2]

    def edge(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (q[:, 0] - p[:, 0]) * (y - p[:, 1]) - (q[:, 1] - p[:, 1]) * (x - p[:, 0])

    e0, e1, e2 = edge(a, b), edge(b, c), edge(c, a)
    eps = 1e-9
    inside = ((e0 > eps) & (e1 > eps) & (e2 > eps)) | ((e0 < -eps) & (e1 < -eps) & (e2 < -eps))
    return np.bincount(y[inside] * resolution + x[inside], minlength=resolution * resolution)


def overlap_fraction(uvs: np.ndarray, faces: np.ndarray, resolution: int = OVERLAP_RESOLUTION) -> float:
    """Fraction of covered texels that more than one triangle covers (0 for an empty mesh)."""
    counts = uv_coverage_counts(uvs, faces, resolution)
    covered = int((counts > 0).sum())
    return float((counts > 1).sum()) / covered if covered else 0.0


def triangle_areas(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unsigned area of each triangle of 2D or 3D `points[faces]` (float64)."""
    tri = points.astype(np.float64)[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    if points.shape[1] == 2:
        return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    return 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)


def uv_density_ratio(uvs: np.ndarray, faces: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Per triangle: its share of the UV area over its share of the surface area (1 = mean texel density).

    Without positions every triangle counts as the same surface area. All zeros when the UV area is zero.
    """
    uv_area = triangle_areas(uvs, faces)
    surface = triangle_areas(positions, faces) if positions is not None else np.ones(len(faces))
    total_uv, total_surface = float(uv_area.sum()), float(surface.sum())
    if total_uv <= 0.0 or total_surface <= 0.0:
        return np.zeros(len(faces))
    return (uv_area / total_uv) / np.maximum(surface / total_surface, 1e-300)


def collapse_reason(uvs: np.ndarray, faces: np.ndarray, positions: np.ndarray | None = None) -> str | None:
    """Why finite, in-range UVs are degenerate (zero area, collapsed to a point or a line), or None."""
    if len(faces) == 0:
        return None
    if float(triangle_areas(uvs, faces).sum()) <= 1e-12:
        return "UVs collapsed to a point or a line (zero UV area)"
    surface = triangle_areas(positions, faces) if positions is not None else np.ones(len(faces))
    collapsed = uv_density_ratio(uvs, faces, positions) < COLLAPSED_DENSITY
    share = float(surface[collapsed].sum() / max(float(surface.sum()), 1e-300))
    if share > COLLAPSED_TOLERANCE:
        return f"{share:.0%} of the surface maps to collapsed (near zero-area) UV triangles"
    return None


def unwrap_reason(uvs: np.ndarray | None, faces: np.ndarray, positions: np.ndarray | None = None) -> str | None:
    """Why these UVs cannot serve as the instance's atlas, or None when they can.

    Checks, in order: missing, non-finite (NaN), outside [0, 1], collapsed (`collapse_reason`; needs
    `positions` to weigh triangles by surface area), overlapping.
    """
    if uvs is None or len(uvs) == 0:
        return "no TEXCOORD_0"
    used = uvs[np.unique(faces.reshape(-1))] if len(faces) else uvs
    if not np.isfinite(used).all():
        return "non-finite UVs"
    if used.min() < -UV_RANGE_TOLERANCE or used.max() > 1.0 + UV_RANGE_TOLERANCE:
        return f"UVs outside [0, 1] (range {used.min():.3g}..{used.max():.3g}; tiled UVs repeat texels)"
    collapsed = collapse_reason(uvs, faces, positions)
    if collapsed is not None:
        return collapsed
    counts = uv_coverage_counts(uvs, faces)
    covered = int((counts > 0).sum())
    if covered < MIN_COVERED_TEXELS:
        return f"UVs cover only {covered} texel(s) of a {counts.shape[0]}² grid"
    fraction = float((counts > 1).sum()) / covered
    if fraction > OVERLAP_TOLERANCE:
        return f"UV triangles overlap ({fraction:.1%} of covered texels are covered twice)"
    return None


def needs_unwrap(uvs: np.ndarray | None, faces: np.ndarray, positions: np.ndarray | None = None) -> bool:
    """True when the UVs are missing, non-finite, outside [0, 1], collapsed or overlap within the instance."""
    return unwrap_reason(uvs, faces, positions) is not None


def unwrap(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fresh non-overlapping atlas in [0, 1]² via xatlas.

    Returns `(new positions, new faces, uvs, vertex map)`: vertices are split
    at the new seams; `vertex map[i]` is the input vertex of new vertex `i`
    (use it to carry other per-vertex attributes over).
    """
    # xatlas works with absolute tolerances (metre-sized meshes): a part a few millimetres across came back
    # with NaN UVs (issue 23). Its UVs do not depend on the mesh's size, so it gets the part centred and
    # scaled to a unit bounding box: the same atlas whatever unit the file was written in.
    p64 = positions.astype(np.float64)
    low, high = p64.min(axis=0), p64.max(axis=0)
    extent = float((high - low).max()) if len(p64) else 0.0
    normalized = (p64 - (low + high) / 2) / (extent if extent > 0 else 1.0)
    vmapping, new_faces, uvs = xatlas.parametrize(
        np.ascontiguousarray(normalized, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32)
    )
    vmap = vmapping.astype(np.int64)
    return (
        positions[vmap].astype(np.float32),
        new_faces.astype(np.int64),
        np.clip(uvs.astype(np.float32), 0.0, 1.0),
        vmap,
    )


def apply_texture_transform(uvs: np.ndarray, transform: dict | None) -> np.ndarray:
    """Apply a glTF `KHR_texture_transform` (`offset`, `rotation`, `scale`) to UVs, as the spec does:
    uv' = T(offset) * R(rotation) * S(scale) * uv with R = [[cos, sin], [-sin, cos]].

    Use it with `Scene.source_uvs` and `part_info["base_color_uv_transform"]` to sample `part_textures`.
    """
    if not transform:
        return uvs
    offset = np.asarray(transform.get("offset", [0.0, 0.0]), dtype=np.float64)
    rotation = float(transform.get("rotation", 0.0))
    scale = np.asarray(transform.get("scale", [1.0, 1.0]), dtype=np.float64)
    c, s = np.cos(rotation), np.sin(rotation)
    scaled = uvs.astype(np.float64) * scale
    rotated = np.stack([c * scaled[:, 0] + s * scaled[:, 1], -s * scaled[:, 0] + c * scaled[:, 1]], axis=1)
    return (rotated + offset).astype(np.float32)
