"""CPU ray casting with Embree (embreex): a `RayCaster` and the `embree` rasterizer backend.

Barycentrics everywhere in this package use nvdiffrast's convention: a hit
point is `u * p0 + v * p1 + (1 - u - v) * p2` for the face's vertices
(p0, p1, p2). (Embree's own u, v weight vertices 1 and 2; converted here.)
"""
from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import blake3
import numpy as np
import torch

from graphflow import UserError
from nodes.components.raster import RASTERIZERS, check_inputs
from nodes.parallel import chunk_bounds, map_chunks

MISS = -1
# Below this many rays per thread, starting threads costs more than it saves.
MIN_RAYS_PER_THREAD = 32768
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
        return origins_np, dirs_np, np.array(tmax_np, dtype=np.float32, copy=True)

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

    def first_hit_numpy(self, origins: np.ndarray, dirs: np.ndarray, tmax: np.ndarray | None = None) -> np.ndarray:
        """Only the face id `[N]` int32 of the closest hit (-1 on a miss): Embree's cheapest query."""
        if origins.shape[0] == 0 or self.num_faces == 0:
            return np.full(origins.shape[0], MISS, np.int32)
        return np.asarray(self._scene.run(origins, dirs, dists=tmax))

    def intersect(self, origins: torch.Tensor | np.ndarray, dirs: torch.Tensor | np.ndarray,
                  tmax: float | torch.Tensor | np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closest hit along each ray `origins [N, 3] + t * dirs [N, 3]`, `0 <= t <= tmax`.

        Returns torch tensors `(t [N] float32 in units of |dirs|, inf on a miss; face_id [N] int64, -1 on a miss;
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
        hit_geometry = self._run_split(origins_np, dirs_np, tmax_np, query="OCCLUDED")
        return torch.from_numpy(hit_geometry >= 0)

    def _run_split(self, origins: np.ndarray, dirs: np.ndarray, tmax: np.ndarray | None, query: str) -> np.ndarray:
        """`EmbreeScene.run` over the rays in chunks on the task's threads (`nodes.parallel`): Embree releases
        the GIL while it casts, so a stage's millions of AO rays use the task's cores instead of one thread.
        Each ray's answer does not depend on the chunking, so the result is the same bytes."""

        def cast(lo: int, hi: int) -> np.ndarray:
            part = None if tmax is None else np.ascontiguousarray(tmax[lo:hi])
            return np.asarray(self._scene.run(np.ascontiguousarray(origins[lo:hi]), np.ascontiguousarray(dirs[lo:hi]),
                                              dists=part, query=query))

        return np.concatenate(map_chunks(cast, chunk_bounds(origins.shape[0], MIN_RAYS_PER_THREAD)))


class CasterCache:
    """The last `size` meshes' ray casters, keyed by the bytes of their positions and faces.

    A BVH costs O(F log F) to build; callers that cast at one mesh many times across calls (every item
    of a stage at the same scene) share one through a cache instead of rebuilding it per call."""

    def __init__(self, size: int) -> None:
        self._casters: OrderedDict[str, RayCaster] = OrderedDict()
        self._size = size

    def get(self, positions: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> RayCaster:
        positions_np = _as_numpy(positions, np.float32)
        faces_np = _as_numpy(faces, np.int32)
        hasher = blake3.blake3(positions_np.tobytes())
        hasher.update(faces_np.tobytes())
        key = hasher.hexdigest()
        caster = self._casters.get(key)
        if caster is None:
            caster = RayCaster(positions_np, faces_np)
            self._casters[key] = caster
            while len(self._casters) > self._size:
                self._casters.popitem(last=False)
        else:
            self._casters.move_to_end(key)
        return caster


# Whole-scene casters (AO occluders): one scene's BVH serves every item of a stage in this process.
SCENE_CASTERS = CasterCache(2)


def pixel_ndc(resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """NDC x, y `[H, W]` of pixel centres, nvdiffrast's convention: row 0 at the bottom (y = -1 + 1/H)."""
    height, width = resolution
    x = (2.0 * np.arange(width, dtype=np.float64) + 1.0) / width - 1.0
    y = (2.0 * np.arange(height, dtype=np.float64) + 1.0) / height - 1.0
    ndc_y, ndc_x = np.meshgrid(y, x, indexing="ij")
    return ndc_x, ndc_y


def homogeneous_fragments(clip: np.ndarray, faces: np.ndarray, face_id: np.ndarray, ndc_x: np.ndarray,
                          ndc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact fragments of known hits, float64: (u, v, z/w, w) at pixel centres `(ndc_x, ndc_y)` on `face_id`.

    Embree only decides which triangle a pixel sees: its float32 barycentrics
    lose ~1e-3 on sub-pixel triangles. Here they are recomputed by homogeneous
    rasterization: with the pixel's ray r = (X, Y, 1) in clip (x, y, w) space,
    the perspective-correct barycentric of vertex i is proportional to
    det[r; c_j; c_k] (i, j, k cyclic), and z/w is the ratio of the interpolated
    clip z and w. These are the values of nvdiffrast's (and the torch
    backend's) screen-space formulas, valid for vertices behind the camera too.
    clip: `[V, 4]` of one view.
    """
    corners = np.take(faces, face_id, axis=0)
    # np.take: ~10x faster than fancy indexing for row gathers.
    x0, y0, z0, w0 = np.take(clip, corners[:, 0], axis=0).T
    x1, y1, z1, w1 = np.take(clip, corners[:, 1], axis=0).T
    x2, y2, z2, w2 = np.take(clip, corners[:, 2], axis=0).T

    def det(xa: np.ndarray, ya: np.ndarray, wa: np.ndarray, xb: np.ndarray, yb: np.ndarray, wb: np.ndarray
            ) -> np.ndarray:
        return ndc_x * (ya * wb - wa * yb) + ndc_y * (wa * xb - xa * wb) + (xa * yb - ya * xb)

    b0 = det(x1, y1, w1, x2, y2, w2)
    b1 = det(x2, y2, w2, x0, y0, w0)
    b2 = det(x0, y0, w0, x1, y1, w1)
    total = b0 + b1 + b2
    degenerate = np.abs(total) < 1e-300  # the ray grazes an edge-on triangle: any weights will do
    if degenerate.any():
        total = np.where(degenerate, 3.0, total)
        b0 = np.where(degenerate, 1.0, b0)
        b1 = np.where(degenerate, 1.0, b1)
    u = b0 / total
    v = b1 / total
    rest = 1.0 - u - v
    w = u * w0 + v * w1 + rest * w2
    return u, v, (u * z0 + v * z1 + rest * z2) / w, w


class EmbreeRasterizer:
    """The `embree` backend: one ray per pixel centre, nvdiffrast's output layout.

    `rasterize_world` keeps one BVH per mesh (a small LRU keyed by the mesh's
    content) and casts the rays of every view in one batch: rays run from the
    near-plane to the far-plane point of each pixel (unprojected with the
    inverse mvp), so clipping against near/far is exact.
    `rasterize` (clip-space input, the protocol) builds a BVH in the space
    (x_c, y_c, w_c), where the camera sits at the origin and a pixel's ray is
    t * (X, Y, 1): an affine image of world space, so visibility is the same.
    In both, barycentrics and z/w come from `homogeneous_fragments` in float64.
    """

    name = "embree"

    def __init__(self, max_cached_meshes: int = 4) -> None:
        self._casters = CasterCache(max_cached_meshes)

    def caster_for(self, positions: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray) -> RayCaster:
        return self._casters.get(positions, faces)

    def rasterize_world(self, positions: torch.Tensor, tri: torch.Tensor, mvp: torch.Tensor,
                        resolution: tuple[int, int]) -> torch.Tensor:
        rast, _ = self.rasterize_world_interpolate(positions, tri, mvp, resolution, None)
        return rast

    def rasterize_world_interpolate(self, positions: torch.Tensor, tri: torch.Tensor, mvp: torch.Tensor,
                                    resolution: tuple[int, int], attributes: torch.Tensor | None
                                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`rasterize_world` plus `interpolate(attributes [V, C], rast, tri)` fused into the same pass.

        Embree releases the GIL while casting, so view k+1 is cast in a worker
        thread while view k's fragments are packed here (same results, in order).
        """
        height, width = resolution
        pixels = height * width
        mvp64 = _as_numpy(mvp, np.float64).reshape(-1, 4, 4)
        views = mvp64.shape[0]
        caster = self.caster_for(positions, tri)
        homogeneous = np.concatenate([caster.positions.astype(np.float64), np.ones((caster.positions.shape[0], 1))],
                                     axis=1)
        attribute_table = None if attributes is None else _as_numpy(attributes, np.float32)
        ndc_x, ndc_y = (a.ravel() for a in pixel_ndc(resolution))
        out = np.zeros((views, pixels, 4), np.float32)
        out_attributes = None if attribute_table is None else \
            np.zeros((views, pixels, attribute_table.shape[1]), np.float32)

        def cast(view: int) -> np.ndarray:
            return caster.first_hit_numpy(*world_rays(mvp64[view:view + 1], resolution))

        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = [worker.submit(cast, view) for view in range(views)]
            for view in range(views):
                view_faces = pending[view].result()
                pending[view] = None  # type: ignore[call-overload]
                hit = np.flatnonzero(view_faces >= 0)
                if hit.size == 0:
                    continue
                hit_faces = np.take(view_faces, hit)
                clip = np.einsum("vj,ij->vi", homogeneous, mvp64[view])  # einsum: no BLAS threads to contend
                u, v, zw, _ = homogeneous_fragments(clip, caster.faces, hit_faces, np.take(ndc_x, hit),
                                                    np.take(ndc_y, hit))
                packed = np.empty((hit.size, 4), np.float32)
                packed[:, 0] = u
                packed[:, 1] = v
                packed[:, 2] = zw
                packed[:, 3] = hit_faces + 1
                out[view, hit] = packed
                if attribute_table is not None and out_attributes is not None:
                    corners = np.take(caster.faces, hit_faces, axis=0)
                    a0, a1, a2 = (np.take(attribute_table, corners[:, k], axis=0) for k in range(3))
                    values = a2 + packed[:, 0:1] * (a0 - a2)
                    values += packed[:, 1:2] * (a1 - a2)
                    out_attributes[view, hit] = values
        rast = torch.from_numpy(out.reshape(views, height, width, 4))
        if out_attributes is None:
            return rast, None
        return rast, torch.from_numpy(out_attributes.reshape(views, height, width, -1))

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        check_inputs(pos_clip, tri, resolution)
        height, width = resolution
        clip_all = _as_numpy(pos_clip, np.float64)
        faces = _as_numpy(tri, np.int32)
        ndc_x, ndc_y = (a.ravel() for a in pixel_ndc(resolution))
        dirs = np.stack([ndc_x, ndc_y, np.ones_like(ndc_x)], axis=1).astype(np.float32)
        out = np.zeros((clip_all.shape[0], height * width, 4), np.float32)
        for view, clip in enumerate(clip_all):
            caster = RayCaster(clip[:, [0, 1, 3]].astype(np.float32), faces)
            origins = np.zeros_like(dirs)
            pending = np.arange(dirs.shape[0])
            # Hits in front of the near plane (z/w < -1) are clipped away: cast again from just behind them.
            for _ in range(8):
                face_id = caster.first_hit_numpy(origins[pending], dirs[pending])
                hit = np.flatnonzero(face_id >= 0)
                if hit.size == 0:
                    break
                rays = pending[hit]
                u, v, zw, w = homogeneous_fragments(clip, faces, face_id[hit], ndc_x[rays], ndc_y[rays])
                visible = (zw >= -1.0) & (zw <= 1.0)
                out[view, rays[visible]] = np.stack([u, v, zw, face_id[hit] + 1.0], axis=1)[visible]
                too_near = zw < -1.0
                if not too_near.any():
                    break
                pending = rays[too_near]
                # The hit is at t = w along t * (X, Y, 1): restart a little further along the same ray.
                origins[pending] = dirs[pending] * (w[too_near] * (1 + _RECAST_EPSILON) + _RECAST_EPSILON)[:, None]
        return torch.from_numpy(out.reshape(-1, height, width, 4))


def world_rays(mvp: np.ndarray, resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays through every pixel centre of every view, from the near plane to the far plane.

    mvp `[B, 4, 4]` float64 -> (origins `[N, 3]` on the near plane, dirs `[N, 3]`, tmax `[N]` reaching the far
    plane), float32, N = B * H * W (view-major, then rows from the bottom).
    """
    height, width = resolution
    x = (2.0 * np.arange(width) + 1.0) / width - 1.0
    y = (2.0 * np.arange(height) + 1.0) / height - 1.0
    # [B, 4, 4]; with columns m0..m3, the world point of clip (X, Y, z, 1) is X m0 + Y m1 + z m2 + m3.
    inverse = np.linalg.inv(mvp)
    if np.all(np.abs(inverse[:, 3, 2]) > 1e-12):
        return _perspective_rays(mvp, inverse, x, y)
    return _general_rays(inverse, x, y)


def _perspective_rays(mvp: np.ndarray, inverse: np.ndarray, x: np.ndarray, y: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perspective cameras: every ray leaves the eye (clip (0, 0, c, 0) = m2), and its direction
    m?[:3] m2[3] - m2[:3] m?[3] is linear in the pixel's NDC (X, Y): no per-pixel matrix product."""
    m0, m1, m2, m3 = (inverse[:, :, k] for k in range(4))  # [B, 4]
    eye = m2[:, :3] / m2[:, 3:4]  # [B, 3]

    def towards(column: np.ndarray) -> np.ndarray:
        return column[:, :3] * m2[:, 3:4] - m2[:, :3] * column[:, 3:4]

    along_x, along_y, constant = towards(m0), towards(m1), towards(m3)  # [B, 3]
    # Point the directions away from the eye, towards the far plane: compare with the centre pixel's far point.
    centre_far = m2 + m3
    sign = np.sign(np.einsum("bi,bi->b", constant, centre_far[:, :3] / centre_far[:, 3:4] - eye))[:, None]
    along_x, along_y, constant = along_x * sign, along_y * sign, constant * sign
    # Clip coordinates along eye + t d: (0, 0, c, 0) + t (mvp[:, :3] d); z/w = c / (t q_w) + q_z / q_w.
    clip_of_eye = np.einsum("bij,bj->bi", mvp[:, :, :3], eye) + mvp[:, :, 3]
    c = clip_of_eye[:, 2]

    def clip_rate(row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.einsum("bj,bj->b", mvp[:, row, :3], along_x), np.einsum("bj,bj->b", mvp[:, row, :3], along_y),
                np.einsum("bj,bj->b", mvp[:, row, :3], constant))

    def per_pixel(coefficients: tuple[np.ndarray, ...]) -> np.ndarray:
        cx, cy, cc = (np.asarray(a, np.float32) for a in coefficients)
        return (cy[:, None, None] * y.astype(np.float32)[None, :, None]
                + (cx[:, None, None] * x.astype(np.float32)[None, None, :] + cc[:, None, None]))

    x32 = x.astype(np.float32)[None, None, :, None]
    y32 = y.astype(np.float32)[None, :, None, None]

    def linear_in_pixels(ax: np.ndarray, ay: np.ndarray, ac: np.ndarray) -> np.ndarray:
        """ax X + ay Y + ac over the image, `[B, H, W, 3]` float32 (one pass per broadcast add)."""
        return (ay.astype(np.float32)[:, None, None, :] * y32
                + (ax.astype(np.float32)[:, None, None, :] * x32 + ac.astype(np.float32)[:, None, None, :]))

    rate_z, rate_w = clip_rate(2), clip_rate(3)
    # The usual perspective: depth along d does not depend on the pixel (up to the float32 rounding of an
    # mvp; 1e-6 relative moves the near/far planes by as much), so t_near / t_far are per view.
    if all(np.all(np.abs(rate[k]) <= 1e-6 * np.abs(rate[2])) for rate in (rate_z, rate_w) for k in (0, 1)):
        t_near = (-c / (rate_w[2] + rate_z[2]))[:, None]
        t_far = (c / (rate_w[2] - rate_z[2]))[:, None]
        dirs = linear_in_pixels(along_x, along_y, constant)
        origins = linear_in_pixels(along_x * t_near, along_y * t_near, eye + constant * t_near)
        tmax = np.repeat((t_far - t_near).astype(np.float32)[:, 0], dirs.shape[1] * dirs.shape[2])
        return origins.reshape(-1, 3), dirs.reshape(-1, 3), tmax
    c32 = c.astype(np.float32)[:, None, None]
    t_near = -c32 / (per_pixel(rate_w) + per_pixel(rate_z))  # z/w = -1
    t_far = c32 / (per_pixel(rate_w) - per_pixel(rate_z))  # z/w = +1
    dirs = linear_in_pixels(along_x, along_y, constant)
    origins = eye.astype(np.float32)[:, None, None, :] + dirs * t_near[..., None]
    return origins.reshape(-1, 3), dirs.reshape(-1, 3), (t_far - t_near).reshape(-1)


def _general_rays(inverse: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any projection (e.g. orthographic): unproject the near and far points of every pixel."""
    # inverse @ (x, y, z, 1) is affine in x and y: add a per-column and a per-row term instead of a matmul.
    per_column = x[None, :, None] * inverse[:, None, :, 0]  # [B, W, 4]
    per_row = y[None, :, None] * inverse[:, None, :, 1]  # [B, H, 4]

    def unproject(ndc_z: float) -> np.ndarray:
        constant = ndc_z * inverse[:, :, 2] + inverse[:, :, 3]  # [B, 4]
        points = per_row[:, :, None, :] + (per_column + constant[:, None, :])[:, None, :, :]  # [B, H, W, 4]
        return (points[..., :3] / points[..., 3:4]).reshape(-1, 3)

    near_world = unproject(-1.0)
    segment = unproject(1.0) - near_world
    return near_world.astype(np.float32), segment.astype(np.float32), np.ones(segment.shape[0], np.float32)


def embree_available() -> bool:
    try:
        import embreex.rtcore_scene  # noqa: F401
    except ImportError:
        return False
    return True


@RASTERIZERS.register("embree")
def embree_rasterizer(device: torch.device) -> EmbreeRasterizer:
    """The CPU ray-casting backend; it runs on the CPU whatever `device` is."""
    if not embree_available():
        raise UserError("rasterizer backend 'embree' needs the embreex package",
                        param="backend", hint="pip install embreex, or use backend: torch")
    return EmbreeRasterizer()


__all__ = [
    "EmbreeRasterizer", "RayCaster", "embree_available", "embree_rasterizer", "homogeneous_fragments", "pixel_ndc",
    "world_rays",
]
