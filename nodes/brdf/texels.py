"""Per-texel surface geometry of an instance's UV atlas, and ambient occlusion.

`texel_geometry` rasterizes the instance's faces in UV space (a ray cast
along -z through the flat UV mesh with embreex, one ray per texel centre) and
interpolates world position, normal and tangent frame for every covered
texel. `ambient_occlusion` casts cosine-weighted hemisphere rays from those
texels against the whole scene.

(AO uses `nodes.render.embree.RayCaster`; `texel_geometry` is like
`nodes.render.uv_raster.texel_fragments` but returns flat buffers of the
covered texels with the glTF tangent frame the decomposition needs.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from embreex import rtcore_scene as rtcs
from embreex.mesh_construction import TriangleMesh

from nodes.render.embree import RayCaster
from nodes.types import Scene

from .ggx import tangent_frame


@dataclass(frozen=True)
class TexelGeometry:
    """Covered texels of one atlas, as flat buffers over `mask.nonzero()` order."""

    mask: torch.Tensor  # [H, W] bool
    index: torch.Tensor  # [N] long, flat texel index (row * W + col)
    face: torch.Tensor  # [N] long, scene face id
    barycentric: torch.Tensor  # [N, 3] weights of the face's vertices 0, 1, 2
    position: torch.Tensor  # [N, 3] world
    normal: torch.Tensor  # [N, 3] world, unit (interpolated shading normal)
    tangent: torch.Tensor  # [N, 3] world, unit, orthogonal to normal (+u direction)
    bitangent: torch.Tensor  # [N, 3] world, unit: cross(n, t) * w, tangent-space +Y (image up, -v)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def texel_geometry(scene: Scene, face_mask: torch.Tensor, size: tuple[int, int]) -> TexelGeometry:
    """Rasterize the faces in `face_mask` into a `size = (H, W)` atlas of `scene.uvs`.

    UVs use glTF's convention (row = v·H) and wrap (`uv mod 1`), so tiled UVs
    land in the unit square; where UV islands overlap, one face wins.
    """
    height, width = size
    face_ids = torch.nonzero(face_mask, as_tuple=False).flatten()
    faces = scene.faces[face_ids]
    uv = scene.uvs[faces].to(torch.float64)  # [F, 3, 2]
    # Wrap each triangle by the floor of its centroid so that tiled UVs fold into [0, 1).
    uv = uv - torch.floor(uv.mean(dim=1, keepdim=True))
    tri = torch.zeros(faces.shape[0], 3, 3, dtype=torch.float32)
    tri[..., 0] = (uv[..., 0] * width).float()
    tri[..., 1] = (uv[..., 1] * height).float()
    empty = TexelGeometry(
        mask=torch.zeros(height, width, dtype=torch.bool), index=torch.zeros(0, dtype=torch.long),
        face=torch.zeros(0, dtype=torch.long), barycentric=torch.zeros(0, 3), position=torch.zeros(0, 3),
        normal=torch.zeros(0, 3),
        tangent=torch.zeros(0, 3), bitangent=torch.zeros(0, 3),
    )
    if faces.shape[0] == 0:
        return empty
    embree_scene = rtcs.EmbreeScene()
    TriangleMesh(embree_scene, tri.numpy())
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    origins = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5, np.ones(height * width)], axis=1).astype(np.float32)
    dirs = np.tile(np.array([[0.0, 0.0, -1.0]], np.float32), (height * width, 1))
    hit = embree_scene.run(origins, dirs, output=1)
    prim = torch.from_numpy(hit["primID"].astype(np.int64))
    covered = prim >= 0
    if not bool(covered.any()):
        return empty
    index = torch.nonzero(covered, as_tuple=False).flatten()
    local_face = prim[index]
    bu = torch.from_numpy(hit["u"]).to(torch.float32)[index]
    bv = torch.from_numpy(hit["v"]).to(torch.float32)[index]
    bary = torch.stack([1.0 - bu - bv, bu, bv], dim=-1)[..., None]  # [N, 3, 1]
    scene_face = face_ids[local_face]
    verts = scene.faces[scene_face]  # [N, 3]
    position = (scene.positions[verts] * bary).sum(1)
    normal = _normalize((scene.normals[verts] * bary).sum(1))
    tangent4 = scene.tangents[verts]  # [N, 3, 4]
    tangent = (tangent4[..., :3] * bary).sum(1)
    handed = torch.where(tangent4[:, 0, 3] < 0, -1.0, 1.0)[:, None]
    tangent = tangent - (tangent * normal).sum(-1, keepdim=True) * normal
    degenerate = tangent.norm(dim=-1) < 1e-8
    if bool(degenerate.any()):
        tangent[degenerate] = tangent_frame(normal[degenerate])[0]
    tangent = _normalize(tangent)
    # glTF: bitangent = cross(normal, tangent.xyz) * w; with glTF-correct tangents it points up
    # the image (towards -v), which is the +Y (green) axis of a normal texture.
    bitangent = torch.cross(normal, tangent, dim=-1) * handed
    mask = covered.reshape(height, width)
    return TexelGeometry(mask=mask, index=index, face=scene_face, barycentric=bary[..., 0], position=position,
                         normal=normal,
                         tangent=tangent, bitangent=bitangent)


def scene_ray_caster(scene: Scene) -> RayCaster:
    """A ray caster over every face of `scene` (occluders for AO)."""
    return RayCaster(scene.positions, scene.faces)


def ambient_occlusion(
    scene: Scene,
    position: torch.Tensor,
    normal: torch.Tensor,
    rays: int,
    generator: torch.Generator,
    max_distance: float | None = None,
    caster: RayCaster | None = None,
) -> torch.Tensor:
    """Fraction `[N]` of cosine-weighted hemisphere rays that escape (1 = open).

    Rays start a small offset along the normal (scaled to the scene size) and
    are cut at `max_distance` (default: a quarter of the scene's bounding
    diagonal), so that distant walls do not darken everything.
    """
    count = position.shape[0]
    if count == 0 or rays <= 0:
        return torch.ones(count)
    extent = float((scene.positions.max(0).values - scene.positions.min(0).values).norm())
    reach = max_distance if max_distance is not None else 0.25 * extent
    offset = 1e-4 * max(extent, 1e-6)
    caster = caster or scene_ray_caster(scene)
    t, b = tangent_frame(normal)
    u = torch.rand(count, rays, 2, generator=generator)
    radius = torch.sqrt(u[..., 0:1])
    phi = 2.0 * math.pi * u[..., 1:2]
    local = torch.cat([radius * torch.cos(phi), radius * torch.sin(phi),
                       torch.sqrt((1.0 - u[..., 0:1]).clamp_min(0.0))], dim=-1)
    dirs = local[..., 0:1] * t[:, None] + local[..., 1:2] * b[:, None] + local[..., 2:3] * normal[:, None]
    origins = (position + offset * normal)[:, None, :].expand(-1, rays, -1)
    hit = caster.occluded(origins.reshape(-1, 3), dirs.reshape(-1, 3), reach).reshape(count, rays)
    return 1.0 - hit.to(torch.float32).mean(dim=1)
