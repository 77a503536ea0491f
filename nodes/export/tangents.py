"""glTF vertex tangents: unit xyz orthogonal to the normal, w = ±1.

glTF's bitangent is `cross(normal, tangent.xyz) * w` and must point up the
texture image (towards -v, v growing downward in glTF UVs): the +Y (green)
axis of a normal texture.
"""
from __future__ import annotations

import torch


def _any_perpendicular(normal: torch.Tensor) -> torch.Tensor:
    axis = torch.zeros_like(normal)
    use_x = normal[:, 0].abs() < 0.9
    axis[use_x, 0] = 1.0
    axis[~use_x, 1] = 1.0
    t = axis - (axis * normal).sum(-1, keepdim=True) * normal
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def vertex_tangents(positions: torch.Tensor, faces: torch.Tensor, normals: torch.Tensor,
                    uvs: torch.Tensor) -> torch.Tensor:
    """Per-vertex tangents `[V, 4]` from UV derivatives (area-weighted, Gram-Schmidt)."""
    pos = positions.to(torch.float64)
    uv = uvs.to(torch.float64)
    nrm = normals.to(torch.float64)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    p0, p1, p2 = (pos[faces[:, i]] for i in range(3))
    t0, t1, t2 = (uv[faces[:, i]] for i in range(3))
    e1, e2 = p1 - p0, p2 - p0
    d1, d2 = t1 - t0, t2 - t0
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    inv = torch.where(det.abs() > 1e-20, 1.0 / det, torch.zeros_like(det))[:, None]
    dp_du = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * inv
    dp_dv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * inv
    tan = torch.zeros_like(pos)
    bit = torch.zeros_like(pos)
    for i in range(3):
        tan.index_add_(0, faces[:, i], dp_du)
        bit.index_add_(0, faces[:, i], dp_dv)
    return finalize_tangents(nrm, tan, -bit)


def finalize_tangents(normals: torch.Tensor, tangent: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """Orthonormalise `tangent` against `normals`, fill degenerate ones, and pick
    `w` so that `cross(n, t) * w` agrees with `up` (image-up direction) when given;
    also used to sanitise tangents that come with a scene."""
    nrm = normals.to(torch.float64)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t = tangent.to(torch.float64)
    t = t - (t * nrm).sum(-1, keepdim=True) * nrm
    norm = t.norm(dim=-1, keepdim=True)
    bad = (norm[:, 0] < 1e-10) | ~torch.isfinite(norm[:, 0])
    t = torch.where(bad[:, None], _any_perpendicular(nrm), t / norm.clamp_min(1e-12))
    # Renormalise after the float64 fix-up so float32 storage stays unit length.
    t = t / t.norm(dim=-1, keepdim=True)
    if up is None:
        w = torch.ones(t.shape[0], dtype=torch.float64)
    else:
        w = torch.where((torch.cross(nrm, t, dim=-1) * up.to(torch.float64)).sum(-1) < 0, -1.0, 1.0)
    return torch.cat([t, w[:, None]], dim=1).to(torch.float32)
