"""UV-space rasterization: which texels of an instance's atlas are covered, and what each shows.

The one coverage rule of the project (texture.project, distillation's island
mask, superres's output mask, brdf's texel geometry and the exports all use it):

- Texel (row j, column i) of an `H x W` atlas has its centre at glTF uv
  ((i + 0.5) / W, (j + 0.5) / H); glTF's v grows downward, so row j = v * H.
- A texel is covered when its centre lies inside a UV triangle (as a GPU
  rasterizer decides); it then shows the surface point of that triangle at
  the centre (face, barycentrics, world position, normal, tangent).
- UVs wrap mod 1, as the glTF export's REPEAT sampler reads them: a triangle
  is rasterized at every integer translate that overlaps the unit square, so
  a texel shows the point a viewer would sample it for. (The loader keeps
  only UVs inside [0, 1], so for its scenes the wrap changes nothing.)
- Where triangles overlap in UV space, the ray caster picks one of them (a
  triangle folded from more than `MAX_WRAP_CELLS` tiles per axis keeps its first ones).

UV triangles are placed at z = 0 and hit by one Embree ray per texel centre.
Texels outside the islands are filled by `fill_atlas_gutter`, the one gutter
policy, so bilinear and mip lookups at island borders find no holes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_cdt

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


AtlasSize = int | tuple[int, int]
# Tiles along u and v one UV triangle is folded from. The loader keeps only UVs in [0, 1]; a triangle
# spanning more tiles (a tiling texture's UVs, kept by `unwrap: never`) covers the atlas many times over
# anyway, so its farther tiles add nothing but cost.
MAX_WRAP_CELLS = 32


def _atlas_shape(size: AtlasSize, caller: str) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"{caller}: size must be >= 1, got {size}")
    return height, width


def _wrapped_copies(uvs: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The translated copies the wrap rule adds: UV triangles `[E, 3, 2]`, each moved by an integer offset
    that makes it overlap [0, 1]^2 (other than its own place), and the face index `[E]` of each copy."""
    corners = uvs[faces]  # [F, 3, 2]
    finite = np.isfinite(corners).all(axis=(1, 2))[:, None]  # a face with NaN UVs covers nothing: no copies
    low = np.where(finite, np.floor(np.nan_to_num(corners.min(axis=1))), 0).astype(np.int64)  # first cell touched
    last = np.where(finite, np.ceil(np.nan_to_num(corners.max(axis=1))) - 1, 0).astype(np.int64)
    high = np.clip(last, low, low + MAX_WRAP_CELLS - 1)  # last unit cell touched (within the cap)
    span = high - low + 1  # [F, 2] cells touched along u and v
    count = span[:, 0] * span[:, 1]
    copy_face = np.repeat(np.arange(len(faces)), count)
    rank = np.arange(len(copy_face)) - np.repeat(np.cumsum(count) - count, count)  # copy number within its face
    cell = low[copy_face] + np.stack([rank // span[copy_face, 1], rank % span[copy_face, 1]], axis=1)
    moved = (cell != 0).any(axis=1)  # the untranslated copy is the face itself
    copies = corners[copy_face[moved]] - cell[moved][:, None, :].astype(uvs.dtype)
    return copies, copy_face[moved]


def _texel_hits(uvs: torch.Tensor, faces: torch.Tensor, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cast one ray per texel centre at the (wrapped) UV triangles: (index into `faces` `[H*W]` or -1,
    barycentrics `[H*W, 3]` of the face's vertices 0, 1, 2)."""
    height, width = shape
    faces_np = faces.detach().cpu().numpy().astype(np.int64).reshape(-1, 3)
    # Only the UVs these faces use: the cost follows the atlas's faces, not the scene they sit in.
    used, local = np.unique(faces_np, return_inverse=True)
    uv_np = uvs.detach().cpu().numpy().astype(np.float32)[used]
    faces_np = local.reshape(-1, 3)
    copies, copy_face = _wrapped_copies(uv_np, faces_np)
    flat_uv = np.concatenate([uv_np, copies.reshape(-1, 2)])
    vertices = np.concatenate([flat_uv, np.zeros((flat_uv.shape[0], 1), np.float32)], axis=1)
    copy_corners = uv_np.shape[0] + np.arange(copies.shape[0] * 3).reshape(-1, 3)
    caster = RayCaster(vertices, np.concatenate([faces_np, copy_corners]))
    face_of = np.concatenate([np.arange(faces_np.shape[0]), copy_face])
    texel_v, texel_u = np.meshgrid((np.arange(height, dtype=np.float32) + 0.5) / height,
                                   (np.arange(width, dtype=np.float32) + 0.5) / width, indexing="ij")
    origins = np.stack([texel_u.ravel(), texel_v.ravel(), np.ones(height * width, np.float32)], axis=1)
    dirs = np.zeros_like(origins)
    dirs[:, 2] = -1.0
    _, hit, u, v = caster.intersect_numpy(np.ascontiguousarray(origins), dirs)
    face_id = np.where(hit >= 0, face_of[np.maximum(hit, 0)], -1)
    bary = np.stack([u, v, 1.0 - u - v], axis=1)
    bary[face_id < 0] = 0.0
    return face_id, bary


def uv_island_mask(uvs: torch.Tensor, faces: torch.Tensor, size: AtlasSize) -> torch.Tensor:
    """`[H, W]` bool (`size` = side or (H, W)): the texels the UV triangles `faces [F, 3]` (uvs `[V, 2]`) cover."""
    shape = _atlas_shape(size, "uv_island_mask")
    face_id, _ = _texel_hits(uvs, faces, shape)
    return torch.from_numpy(face_id >= 0).reshape(shape)


def texel_fragments(scene: Scene, face_mask: torch.Tensor, size: AtlasSize) -> TexelFragments:
    """Rasterize the faces selected by `face_mask [F]` (bool over `scene.faces`) into an atlas of `size`
    (side, or (H, W))."""
    shape = _atlas_shape(size, "texel_fragments")
    selected = torch.nonzero(face_mask.to(torch.bool).cpu(), as_tuple=False).flatten()
    faces = scene.faces.cpu()[selected]
    local_face, bary_np = _texel_hits(scene.uvs, faces, shape)
    covered_np = local_face >= 0
    face_id = torch.full((shape[0] * shape[1],), -1, dtype=torch.int64)
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
    return TexelFragments(
        face_id=face_id.reshape(shape),
        bary=bary.reshape(*shape, 3),
        position=position.reshape(*shape, 3),
        normal=normal.reshape(*shape, 3),
        tangent=tangent.reshape(*shape, 4),
        mask=covered.reshape(shape),
    )


def fill_atlas_gutter(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The one gutter policy: every texel of `image [C, H, W]` outside `mask [H, W]` (the texels that hold
    data: an atlas's islands, or the texels some view saw) filled from the mask by `dilate_into_empty`.

    Ring count: the whole atlas (max(H, W) rings). The first rings average their neighbours (no dark
    halos at seams under bilinear lookups), the rest copy their nearest island texel, so every mip level
    a viewer's LINEAR_MIPMAP_LINEAR sampler reads, down to 1x1, finds island colour and no hole; and an
    atlas's texels outside its mask depend on the mask's texels only, never on what a producer left there.
    An empty mask leaves the image unchanged.
    """
    return dilate_into_empty(image, mask, iterations=max(int(image.shape[-2]), int(image.shape[-1])))


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


__all__ = ["AtlasSize", "TexelFragments", "dilate_into_empty", "fill_atlas_gutter", "texel_fragments", "uv_island_mask"]
