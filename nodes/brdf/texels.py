"""Per-texel surface geometry of an instance's UV atlas, and ambient occlusion.

`texel_geometry` is the atlas's fragments (`nodes.render.uv_raster.texel_fragments`,
the project's one coverage and wrap rule) as flat buffers of the covered
texels, with the orthonormal glTF tangent frame the decomposition needs.
`ambient_occlusion` casts cosine-weighted hemisphere rays from those texels
against the whole scene (`nodes.render.embree.RayCaster`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nodes.render.embree import SCENE_CASTERS, RayCaster
from nodes.render.uv_raster import texel_fragments
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


def texel_geometry(scene: Scene, face_mask: torch.Tensor, size: tuple[int, int],
                   within: torch.Tensor | None = None) -> TexelGeometry:
    """The covered texels of the faces in `face_mask` on a `size = (H, W)` atlas of `scene.uvs`.

    Coverage, UV convention (row = v·H) and wrap (`uv mod 1`) are `texel_fragments`'s; where UV islands
    overlap, one face wins. `within` (`[H, W]` bool, e.g. the mask that came with a texture) keeps only
    the covered texels inside it.
    """
    fragments = texel_fragments(scene, face_mask, size)
    mask = fragments.mask if within is None else fragments.mask & within.to(torch.bool).cpu()
    index = torch.nonzero(mask.reshape(-1), as_tuple=False).flatten()
    normal = fragments.normal.reshape(-1, 3)[index]
    tangent4 = fragments.tangent.reshape(-1, 4)[index]
    tangent = tangent4[:, :3] - (tangent4[:, :3] * normal).sum(-1, keepdim=True) * normal
    degenerate = tangent.norm(dim=-1) < 1e-8
    if bool(degenerate.any()):
        tangent[degenerate] = tangent_frame(normal[degenerate])[0]
    tangent = _normalize(tangent)
    # glTF: bitangent = cross(normal, tangent.xyz) * w; with glTF-correct tangents it points up
    # the image (towards -v), which is the +Y (green) axis of a normal texture.
    bitangent = torch.cross(normal, tangent, dim=-1) * tangent4[:, 3:]
    return TexelGeometry(mask=mask, index=index, face=fragments.face_id.reshape(-1)[index],
                         barycentric=fragments.bary.reshape(-1, 3)[index],
                         position=fragments.position.reshape(-1, 3)[index], normal=normal, tangent=tangent,
                         bitangent=bitangent)


def scene_ray_caster(scene: Scene) -> RayCaster:
    """A ray caster over every face of `scene` (occluders for AO), shared by the items of a stage."""
    return SCENE_CASTERS.get(scene.positions, scene.faces)


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
