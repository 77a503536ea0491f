"""Per-vertex attributes of triangle meshes: normals, tangents, clean-up.

Plain numpy (float64 internally, float32 out) so loaders stay deterministic
and independent of torch's thread count.
"""
from __future__ import annotations

import numpy as np


def triangle_cross(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals `(p1 - p0) x (p2 - p0)`; the length is twice the area."""
    p = positions.astype(np.float64)
    p0, p1, p2 = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    return np.cross(p1 - p0, p2 - p0)


def degenerate_faces(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mask of triangles with a repeated vertex index or (numerically) zero area.

    "Zero" is relative to the mesh size: twice the area below 1e-12 of the
    squared bounding-box diagonal.
    """
    if len(faces) == 0:
        return np.zeros(0, dtype=bool)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    p64 = positions.astype(np.float64)
    extent = p64.max(axis=0) - p64.min(axis=0) if len(positions) else np.zeros(3)
    diag2 = float(np.dot(extent, extent))
    area2 = np.linalg.norm(triangle_cross(positions, faces), axis=1)
    return repeated | (area2 <= 1e-12 * max(diag2, 1e-30))


def compact(faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices: returns (kept vertex indices in order, remapped faces)."""
    used = np.zeros(num_vertices, dtype=bool)
    used[faces.reshape(-1)] = True
    kept = np.flatnonzero(used)
    remap = np.full(num_vertices, -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept), dtype=np.int64)
    return kept, remap[faces]


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (sum of unnormalised face normals), unit length.

    Vertices with no usable face get +Y so every normal is finite and unit.
    """
    acc = np.zeros((len(positions), 3), dtype=np.float64)
    cross = triangle_cross(positions, faces)
    for corner in range(3):
        np.add.at(acc, faces[:, corner], cross)
    return _normalise(acc, fallback=np.array([0.0, 1.0, 0.0])).astype(np.float32)


def _normalise(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    ok = (norm[:, 0] > 1e-20) & np.isfinite(norm[:, 0])
    out = np.empty_like(v)
    out[ok] = v[ok] / norm[ok]
    out[~ok] = fallback
    return out


def _any_perpendicular(n: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to each unit normal (for vertices without a UV gradient)."""
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    t = helper - n * np.sum(helper * n, axis=1, keepdims=True)
    return _normalise(t, fallback=np.array([1.0, 0.0, 0.0]))


def vertex_tangents(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex tangents `[V, 4]` (xyz unit, w = ±1) from UV gradients, MikkTSpace-like.

    Per face: the tangent/bitangent solving dP = T du + B dv, weighted by the
    face area (accumulated per vertex), Gram-Schmidt against the normal;
    w = sign((n x t) . b), so glTF's bitangent `cross(n, t.xyz) * w` points along
    the direction of increasing v of the stored (glTF, v-down) UVs.
    """
    p = positions.astype(np.float64)
    uv = uvs.astype(np.float64)
    n = normals.astype(np.float64)
    i0, i1, i2 = faces[:, 0], faces[:, 1], faces[:, 2]
    e1, e2 = p[i1] - p[i0], p[i2] - p[i0]
    d1, d2 = uv[i1] - uv[i0], uv[i2] - uv[i0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    valid = np.abs(det) > 1e-20
    inv = np.where(valid, 1.0 / np.where(valid, det, 1.0), 0.0)[:, None]
    face_t = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * inv
    face_b = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * inv
    # Weight by area so that tiny slivers do not dominate (the 1/det scaling already
    # makes T, B proportional to world length per UV unit, independent of area).
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)[:, None]
    face_t *= area
    face_b *= area
    acc_t = np.zeros_like(p)
    acc_b = np.zeros_like(p)
    for idx in (i0, i1, i2):
        np.add.at(acc_t, idx, face_t)
        np.add.at(acc_b, idx, face_b)
    t = acc_t - n * np.sum(acc_t * n, axis=1, keepdims=True)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    ok = (norm[:, 0] > 1e-20) & np.isfinite(norm[:, 0])
    t = np.where(ok[:, None], t / np.where(ok[:, None], norm, 1.0), _any_perpendicular(n))
    w = np.where(np.sum(np.cross(n, t) * acc_b, axis=1) < 0.0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], axis=1).astype(np.float32)
