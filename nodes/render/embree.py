"""CPU ray casting with Embree (embreex): a `RayCaster` and the `embree` rasterizer backend.

Barycentrics everywhere in this package use nvdiffrast's convention: a hit
point is `u * p0 + v * p1 + (1 - u - v) * p2` for the face's vertices
(p0, p1, p2). (Embree's own u, v weight vertices 1 and 2; converted here.)
"""
from __future__ import annotations

from collections import OrderedDict

import blake3
import numpy as np
import torch

from .raster import check_inputs

MISS = -1
# A ray from an origin placed exactly on a surface must not hit it again.
_RECAST_EPSILON = 1e-5


def _as_numpy(array: torch.Tensor | np.ndarray, dtype: type) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=dtype)


class RayCaster:
    """A BVH over one triangle mesh; cast many rays at once (vectorised over numpy arrays).

    `positions [V, 3]`, `faces [F, 3]` (torch or numpy). Build once, query often.
    """

    def __init__(self, positions: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> None:
        from embreex import mesh_construction, rtcore_scene

        self.positions = _as_numpy(positions, np.float32).reshape(-1, 3)
        self.faces = _as_numpy(faces, np.int32).reshape(-1, 3)
        self._scene = rtcore_scene.EmbreeScene()
        if len(self.faces):
            mesh_construction.TriangleMesh(self._scene, self.positions, self.faces)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def _rays(self, origins: torch.Tensor | np.ndarray, dirs: torch.Tensor | np.ndarray,
              tmax: float | torch.Tensor | np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        origins_np = _as_numpy(origins, np.float32).reshape(-1, 3)
        dirs_np = _as_numpy(dirs, np.float32).reshape(-1, 3)
        if tmax is None:
            return origins_np, dirs_np, None
        tmax_np = np.broadcast_to(_as_numpy(tmax, np.float32), (origins_np.shape[0],))
        return origins_np, dirs_np, np.ascontiguousarray(tmax_np)

    def intersect_numpy(self, origins: np.ndarray, dirs: np.ndarray, tmax: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Closest hits as numpy: (t float32 (inf on miss), face_id int64 (-1), u, v) in nvdiffrast's convention."""
        count = origins.shape[0]
        if count == 0 or self.num_faces == 0:
            return (np.full(count, np.inf, np.float32), np.full(count, MISS, np.int64),
                    np.zeros(count, np.float32), np.zeros(count, np.float32))
        hits = self._scene.run(origins, dirs, dists=tmax, output=1)
        face_id = hits["primID"].astype(np.int64)
        missed = face_id < 0
        t = np.where(missed, np.float32(np.inf), hits["tfar"]).astype(np.float32)
        u_embree = hits["u"]
        v_embree = hits["v"]
        u = np.where(missed, np.float32(0), 1.0 - u_embree - v_embree).astype(np.float32)
        v = np.where(missed, np.float32(0), u_embree).astype(np.float32)
        return t, face_id, u, v

    def intersect(self, origins: torch.Tensor | np.ndarray, dirs: torch.Tensor | np.ndarray,
                  tmax: float | torch.Tensor | np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closest hit along each ray `origins [N, 3] + t * dirs [N, 3]`, `0 <= t <= tmax`.

        Returns torch tensors `(t [N] float32, inf on a miss; face_id [N] int64, -1 on a miss;
        u [N], v [N])` with the hit point `u * p0 + v * p1 + (1 - u - v) * p2`.
        """
        t, face_id, u, v = self.intersect_numpy(*self._rays(origins, dirs, tmax))
        return torch.from_numpy(t), torch.from_numpy(face_id), torch.from_numpy(u), torch.from_numpy(v)

    def occluded(self, origins: torch.Tensor | np.ndarray, dirs: torch.Tensor | np.ndarray,
                 tmax: float | torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """`[N]` bool: does any triangle lie on the ray within `0 <= t <= tmax`?

        Offset origins off the surface (e.g. by 1e-4 along the normal) to avoid self-hits.
        """
        origins_np, dirs_np, tmax_np = self._rays(origins, dirs, tmax)
        if origins_np.shape[0] == 0 or self.num_faces == 0:
            return torch.zeros(origins_np.shape[0], dtype=torch.bool)
        hit_geometry = self._scene.run(origins_np, dirs_np, dists=tmax_np, query="OCCLUDED")
        return torch.from_numpy(np.asarray(hit_geometry) >= 0)


def pixel_ndc(resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """NDC x, y `[H, W]` of pixel centres, nvdiffrast's convention: row 0 at the bottom (y = -1 + 1/H)."""
    height, width = resolution
    x = (2.0 * np.arange(width, dtype=np.float64) + 1.0) / width - 1.0
    y = (2.0 * np.arange(height, dtype=np.float64) + 1.0) / height - 1.0
    ndc_y, ndc_x = np.meshgrid(y, x, indexing="ij")
    return ndc_x, ndc_y


def _pack(face_id: np.ndarray, u: np.ndarray, v: np.ndarray, clip: np.ndarray, faces: np.ndarray,
          view_of_ray: np.ndarray | None) -> np.ndarray:
    """Hits -> nvdiffrast rows `(u, v, z/w, id + 1)` float32 `[N, 4]`; z/w from perspective-correct barycentrics.

    clip: `[V, 4]` or `[B, V, 4]` (then `view_of_ray [N]` selects the view).
    """
    out = np.zeros((face_id.shape[0], 4), np.float32)
    hit = np.nonzero(face_id >= 0)[0]
    if hit.size == 0:
        return out
    corners = faces[face_id[hit]]  # [n, 3]
    if clip.ndim == 2:
        corner_clip = clip[corners]  # [n, 3, 4]
    else:
        corner_clip = clip[view_of_ray[hit][:, None], corners]
    b0 = u[hit].astype(np.float64)
    b1 = v[hit].astype(np.float64)
    weights = np.stack([b0, b1, 1.0 - b0 - b1], axis=1)[:, :, None]
    zw = (weights * corner_clip[:, :, 2:4]).sum(axis=1)
    out[hit, 0] = u[hit]
    out[hit, 1] = v[hit]
    out[hit, 2] = zw[:, 0] / zw[:, 1]
    out[hit, 3] = face_id[hit] + 1
    return out


class EmbreeRasterizer:
    """The `embree` backend: one ray per pixel centre, nvdiffrast's output layout.

    `rasterize_world` keeps one BVH per mesh (a small LRU keyed by the mesh's
    content) and casts the rays of every view in one batch: rays run from the
    near-plane to the far-plane point of each pixel (unprojected with the
    inverse mvp), so clipping against near/far is exact.
    `rasterize` (clip-space input, the protocol) builds a BVH in the space
    (x_c, y_c, w_c), where the camera sits at the origin and a pixel's ray is
    t * (X, Y, 1): an affine image of world space, so barycentrics are the
    perspective-correct ones.
    """

    name = "embree"

    def __init__(self, max_cached_meshes: int = 4) -> None:
        self._casters: OrderedDict[str, RayCaster] = OrderedDict()
        self._max_cached = max_cached_meshes

    def caster_for(self, positions: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> RayCaster:
        positions_np = _as_numpy(positions, np.float32)
        faces_np = _as_numpy(faces, np.int32)
        hasher = blake3.blake3(positions_np.tobytes())
        hasher.update(faces_np.tobytes())
        key = hasher.hexdigest()
        caster = self._casters.get(key)
        if caster is None:
            caster = RayCaster(positions_np, faces_np)
            self._casters[key] = caster
            while len(self._casters) > self._max_cached:
                self._casters.popitem(last=False)
        else:
            self._casters.move_to_end(key)
        return caster

    def rasterize_world(self, positions: torch.Tensor, tri: torch.Tensor, mvp: torch.Tensor,
                        resolution: tuple[int, int]) -> torch.Tensor:
        height, width = resolution
        mvp64 = _as_numpy(mvp, np.float64).reshape(-1, 4, 4)
        views = mvp64.shape[0]
        caster = self.caster_for(positions, tri)
        origins, dirs = world_rays(mvp64, resolution)
        # t in [0, 1] spans near -> far plane.
        t, face_id, u, v = caster.intersect_numpy(origins, dirs, np.ones(origins.shape[0], np.float32))
        positions64 = caster.positions.astype(np.float64)
        homogeneous = np.concatenate([positions64, np.ones((positions64.shape[0], 1))], axis=1)
        clip = np.einsum("bij,vj->bvi", mvp64, homogeneous)
        view_of_ray = np.repeat(np.arange(views), height * width)
        packed = _pack(face_id, u, v, clip, caster.faces, view_of_ray)
        return torch.from_numpy(packed.reshape(views, height, width, 4))

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        check_inputs(pos_clip, tri, resolution)
        height, width = resolution
        clip_all = _as_numpy(pos_clip, np.float64)
        faces = _as_numpy(tri, np.int32)
        ndc_x, ndc_y = pixel_ndc(resolution)
        dirs = np.stack([ndc_x, ndc_y, np.ones_like(ndc_x)], axis=-1).reshape(-1, 3).astype(np.float32)
        out = np.zeros((clip_all.shape[0], height * width, 4), np.float32)
        for view, clip in enumerate(clip_all):
            caster = RayCaster(clip[:, [0, 1, 3]].astype(np.float32), faces)
            origins = np.zeros_like(dirs)
            pending = np.arange(dirs.shape[0])
            # Hits in front of the near plane (z/w < -1) are clipped away: cast again from just behind them.
            for _ in range(8):
                t, face_id, u, v = caster.intersect_numpy(origins[pending], dirs[pending])
                packed = _pack(face_id, u, v, clip, faces, None)
                too_near = (face_id >= 0) & (packed[:, 2] < -1.0)
                too_far = (face_id >= 0) & (packed[:, 2] > 1.0)
                packed[too_far] = 0.0
                keep = ~too_near
                out[view, pending[keep]] = packed[keep]
                if not too_near.any():
                    break
                restart = pending[too_near]
                # w at the hit is t (ray t*(X,Y,1)); restart a little further along the same ray.
                origins[restart] = dirs[restart] * (t[too_near] * (1 + _RECAST_EPSILON) + _RECAST_EPSILON)[:, None]
                pending = restart
        return torch.from_numpy(out.reshape(-1, height, width, 4))


def world_rays(mvp: np.ndarray, resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rays through every pixel centre of every view: origins on the near plane, dirs to the far plane.

    mvp `[B, 4, 4]` float64 -> (origins, dirs) float32 `[B * H * W, 3]` (view-major, then rows from the bottom).
    """
    ndc_x, ndc_y = pixel_ndc(resolution)
    count = ndc_x.size
    near = np.stack([ndc_x.ravel(), ndc_y.ravel(), -np.ones(count), np.ones(count)], axis=1)
    far = near.copy()
    far[:, 2] = 1.0
    inverse = np.linalg.inv(mvp)  # [B, 4, 4]
    near_world = np.einsum("bij,nj->bni", inverse, near)
    far_world = np.einsum("bij,nj->bni", inverse, far)
    near_world = near_world[..., :3] / near_world[..., 3:4]
    far_world = far_world[..., :3] / far_world[..., 3:4]
    origins = near_world.reshape(-1, 3).astype(np.float32)
    dirs = (far_world - near_world).reshape(-1, 3).astype(np.float32)
    return origins, dirs


__all__ = ["EmbreeRasterizer", "RayCaster", "pixel_ndc", "world_rays"]
