"""UV-space rasterization: which surface point every texel of an instance's atlas shows.

Texel (row j, column i) of a `size x size` atlas has its centre at glTF uv
((i + 0.5) / size, (j + 0.5) / size); glTF's v grows downward, so row j = v * size.
Coverage is decided at texel centres (as a GPU rasterizer would); use
`dilate_into_empty` so bilinear lookups at island borders find no holes.
UV triangles are placed at z = 0 and hit by one Embree ray per texel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nodes.types import Scene

from .embree import RayCaster


@dataclass(frozen=True)
class TexelFragments:
    """Per texel of a `[H, W]` atlas: the surface point it shows (zeros / -1 where `mask` is False)."""

    face_id: torch.Tensor  # [H, W] int64 index into Scene.faces, -1 empty
    bary: torch.Tensor  # [H, W, 3] float32 weights of the face's vertices 0, 1, 2
    position: torch.Tensor  # [H, W, 3] float32 world space
    normal: torch.Tensor  # [H, W, 3] float32 unit world-space normal
    tangent: torch.Tensor  # [H, W, 4] float32 unit xyz + handedness w = ±1
    mask: torch.Tensor  # [H, W] bool

    @property
    def size(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])


def _texel_hits(uvs: torch.Tensor, faces: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cast one ray per texel centre at the UV triangles: (local face index `[H*W]` or -1, barycentrics `[H*W, 3]`)."""
    uv_np = uvs.detach().cpu().numpy().astype(np.float32)
    vertices = np.concatenate([uv_np, np.zeros((uv_np.shape[0], 1), np.float32)], axis=1)
    caster = RayCaster(vertices, faces)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    texel_v, texel_u = np.meshgrid(centres, centres, indexing="ij")
    origins = np.stack([texel_u.ravel(), texel_v.ravel(), np.ones(size * size, np.float32)], axis=1)
    dirs = np.zeros_like(origins)
    dirs[:, 2] = -1.0
    _, face_id, u, v = caster.intersect_numpy(np.ascontiguousarray(origins), dirs)
    bary = np.stack([u, v, 1.0 - u - v], axis=1)
    bary[face_id < 0] = 0.0
    return face_id, bary


def uv_island_mask(uvs: torch.Tensor, faces: torch.Tensor, size: int) -> torch.Tensor:
    """`[size, size]` bool: texels whose centre lies inside some UV triangle of `faces [F, 3]` (uvs `[V, 2]`)."""
    if size < 1:
        raise ValueError(f"uv_island_mask: size must be >= 1, got {size}")
    face_id, _ = _texel_hits(uvs, faces, size)
    return torch.from_numpy(face_id >= 0).reshape(size, size)


def texel_fragments(scene: Scene, face_mask: torch.Tensor, size: int) -> TexelFragments:
    """Rasterize the faces selected by `face_mask [F]` (bool over `scene.faces`) into a `size x size` atlas."""
    if size < 1:
        raise ValueError(f"texel_fragments: size must be >= 1, got {size}")
    selected = torch.nonzero(face_mask.to(torch.bool).cpu(), as_tuple=False).flatten()
    faces = scene.faces.cpu()[selected]
    local_face, bary_np = _texel_hits(scene.uvs, faces, size)
    covered_np = local_face >= 0
    face_id = torch.full((size * size,), -1, dtype=torch.int64)
    covered = torch.from_numpy(covered_np)
    face_id[covered] = selected[torch.from_numpy(local_face[covered_np])]
    bary = torch.from_numpy(bary_np.astype(np.float32))

    corners = scene.faces.cpu()[face_id.clamp(min=0)]  # [N, 3]

    def blend(attribute: torch.Tensor) -> torch.Tensor:
        values = attribute.cpu().float()[corners]  # [N, 3, C]
        return (bary.unsqueeze(-1) * values).sum(dim=1) * covered.unsqueeze(-1)

    position = blend(scene.positions)
    normal = F.normalize(blend(scene.normals), dim=-1)
    tangent_raw = blend(scene.tangents)
    tangent_xyz = F.normalize(tangent_raw[:, :3], dim=-1)
    handedness = torch.where(tangent_raw[:, 3] < 0, -1.0, 1.0) * covered
    tangent = torch.cat([tangent_xyz, handedness.unsqueeze(-1)], dim=-1)
    shape = (size, size)
    return TexelFragments(
        face_id=face_id.reshape(shape),
        bary=bary.reshape(*shape, 3),
        position=position.reshape(*shape, 3),
        normal=normal.reshape(*shape, 3),
        tangent=tangent.reshape(*shape, 4),
        mask=covered.reshape(shape),
    )


# Rings filled by neighbour averaging (smooth seams); farther texels copy their nearest filled texel.
_AVERAGED_RINGS = 4


def dilate_into_empty(image: torch.Tensor, mask: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    """Fill texels outside `mask [H, W]` up to `iterations` texels away from it; `image [C, H, W]`.

    The first rings take the mean of their valid 3x3 neighbours (so atlas
    seams get no dark halos under bilinear/mip sampling); beyond 4 rings a texel
    copies the nearest filled texel (chessboard distance transform), so large
    `iterations` (e.g. the atlas size, "fill everything") cost one pass.
    Texels inside the mask, and texels farther away, are returned unchanged.
    """
    if image.dim() != 3 or mask.shape != image.shape[1:]:
        raise ValueError(f"dilate_into_empty: expected image [C,H,W] and mask [H,W], got {tuple(image.shape)}, "
                         f"{tuple(mask.shape)}")
    valid = mask.to(image.dtype).unsqueeze(0).unsqueeze(0)  # [1,1,H,W]
    if not bool(valid.any()) or iterations <= 0:
        return image.clone()
    filled = image.unsqueeze(0) * valid
    kernel_sum = lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True) * 9.0  # noqa: E731
    for _ in range(min(iterations, _AVERAGED_RINGS)):
        neighbour_count = kernel_sum(valid)
        grow = (neighbour_count > 0) & (valid == 0)
        if not bool(grow.any()):
            break
        neighbour_mean = kernel_sum(filled) / neighbour_count.clamp(min=1.0)
        filled = torch.where(grow, neighbour_mean, filled)
        valid = torch.where(grow, torch.ones_like(valid), valid)
    filled = filled.squeeze(0)
    valid_2d = valid[0, 0] > 0
    if iterations > _AVERAGED_RINGS and not bool(valid_2d.all()):
        from scipy.ndimage import distance_transform_cdt

        # Chessboard distance: the reach of `iterations` 3x3 rings, as the averaging would have had.
        distance, (rows, cols) = distance_transform_cdt(~valid_2d.cpu().numpy(), metric="chessboard",
                                                        return_indices=True)
        reach = torch.from_numpy(distance <= iterations - _AVERAGED_RINGS).to(image.device) & ~valid_2d
        source = torch.from_numpy(rows * image.shape[-1] + cols).to(image.device)
        nearest = filled.reshape(image.shape[0], -1)[:, source.reshape(-1)].reshape_as(filled)
        filled = torch.where(reach, nearest, filled)
        valid_2d = valid_2d | reach
    # Texels too far from any island keep their original value.
    return torch.where(valid_2d, filled, image)


__all__ = ["TexelFragments", "dilate_into_empty", "texel_fragments", "uv_island_mask"]
