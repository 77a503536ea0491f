"""Camera sampling around instances (and inside the room) and their fragments: the `Views` port value.

Orbit cameras for an instance are chosen from candidates by how much of the
instance they actually see in the whole scene (occlusion by other instances
is real): each candidate is rasterized at a low resolution, and cameras are
picked greedily by visible area plus a bonus for directions far from those
already picked. Candidates come from the upper hemisphere around the
instance's bounding box (at several distances, so that cameras can stand
inside a room), and, for open surfaces (walls, rugs: a dominant normal),
from the hemisphere in front of their visible face. A sofa against a wall
therefore gets cameras on the room side; a wall gets cameras inside the room.

For real scenes (issue 14), `isolate` scores and renders each instance's own cameras with only its
faces (a bulb inside a closed shade gets pixels; see `sample_views` for why alone rather than a
clipped near plane), and `pixels_per_metre` sizes each instance's views by its size (`view_plan`).
Both default off, which keeps the views of before bit for bit.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from graphflow import UserError
from nodes.components.raster import BackendName, Rasterizer
from nodes.types import Instance, Scene, Views

from .cameras import Camera, framing_distance, intrinsics, orbit_cameras, room_cameras
from .ops import interpolate
from .raster import get_rasterizer

# Resolution at which candidate cameras are scored.
SCORING_RESOLUTION = 48
CANDIDATES_PER_CAMERA = 6
# A surface whose area-weighted mean normal is at least this long (1 = flat) gets cameras in front of it.
OPEN_SURFACE_THRESHOLD = 0.5
# Extra candidates below the elevation range, down to this elevation (degrees), at half preference.
LOW_ELEVATION = -60.0
LOW_PREFERENCE = 0.5
# Candidates seeing less than this fraction of the best one are picked only when nothing else is left.
MIN_RELATIVE_VISIBILITY = 0.05
# Density-driven views (`view_plan`): pixels of views per pixel of surface at the density (views overlap and
# see surfaces obliquely), the share of a view's frame the instance fills, and the smallest instance footprint
# in pixels (distillation needs 16 pixels of an instance in some view).
COVERAGE = 2.0
VIEW_FILL = 0.5
MIN_FOOTPRINT = 32


def face_instance_map(num_faces: int, instances: Mapping[str, Instance]) -> torch.Tensor:
    """`[F]` int64: index (in `instances` order) of the instance owning each face, -1 for none."""
    owner = torch.full((num_faces,), -1, dtype=torch.int64)
    for index, (name, instance) in enumerate(instances.items()):
        mask = instance.face_mask.to(torch.bool).cpu()
        if mask.shape != (num_faces,):
            raise UserError(f"instance '{name}' has a face mask of shape {tuple(mask.shape)}, but the scene has "
                            f"{num_faces} faces", item=name, hint="connect the instances made from this scene")
        owner[mask] = index
    return owner


def mean_normal(scene: Scene, face_mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Area-weighted mean face normal of the selected faces: (unit direction, length in [0, 1])."""
    faces = scene.faces[face_mask.to(torch.bool)]
    if faces.numel() == 0:
        return torch.tensor([0.0, 1.0, 0.0]), 0.0
    corners = scene.positions.double()[faces]
    weighted = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # 2 * area * n
    total_area = weighted.norm(dim=1).sum()
    mean = weighted.sum(dim=0)
    if total_area <= 0:
        return torch.tensor([0.0, 1.0, 0.0]), 0.0
    length = float(mean.norm() / total_area)
    return (mean / mean.norm().clamp(min=1e-30)).float(), length


def _instance_seed(seed: int, name: str) -> int:
    # Per-instance streams: editing one instance does not move the cameras of another.
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _direction(camera: Camera) -> torch.Tensor:
    offset = (camera.eye - camera.target).double()
    return offset / offset.norm().clamp(min=1e-12)


def candidate_cameras(scene: Scene, instance: Instance, count: int, elevation: tuple[float, float],
                      fov: tuple[float, float], margin: float, generator: torch.Generator
                      ) -> tuple[list[Camera], torch.Tensor]:
    """Candidate cameras for one instance and a preference weight each (1, or 0.5 below `elevation`)."""
    bbox = instance.bbox.double()
    center = (bbox[0] + bbox[1]) / 2
    radius = max(float((bbox[1] - bbox[0]).norm()) / 2, 1e-3)
    total = CANDIDATES_PER_CAMERA * count
    normal, openness = mean_normal(scene, instance.face_mask)
    facing_other_than_up = openness >= OPEN_SURFACE_THRESHOLD and float(normal[1]) < 0.9
    hemisphere_count = total // 2 if facing_other_than_up else total
    cameras = orbit_cameras(center, radius, hemisphere_count, elevation, fov, generator, margin=margin,
                            distance_scale=(0.35, 1.0))
    if facing_other_than_up:
        cameras += orbit_cameras(center, radius, total - hemisphere_count, (35.0, 85.0), fov, generator,
                                 margin=margin, distance_scale=(0.35, 1.0), axis=normal)
    preference = [1.0] * len(cameras)
    if elevation[0] > LOW_ELEVATION:
        # Parts seen only from below (glides under chair legs, a shelf's underside) get low cameras too; they
        # win only when they see clearly more (in a room, the floor hides the instance from them anyway).
        low = orbit_cameras(center, radius, total // 2, (LOW_ELEVATION, elevation[0]), fov, generator, margin=margin,
                            distance_scale=(0.35, 1.0))
        cameras += low
        preference += [LOW_PREFERENCE] * len(low)
    return cameras, torch.tensor(preference, dtype=torch.float64)


def _distance_scale(camera: Camera, instance: Instance, margin: float) -> float:
    """Camera distance over the distance that frames the instance's bounding sphere."""
    radius = max(float((instance.bbox[1] - instance.bbox[0]).norm()) / 2, 1e-3)
    return float((camera.eye - camera.target).norm()) / framing_distance(radius, camera.fov_y, margin)


def _view_matrices(cameras: list[Camera], resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    world_to_cam = torch.stack([camera.world_to_cam() for camera in cameras])
    mvp = torch.stack([camera.mvp(1.0) for camera in cameras])
    k = torch.stack([intrinsics(camera.fov_y, resolution, resolution) for camera in cameras])
    return mvp, world_to_cam, k


def pick_cameras(candidates: list[Camera], visibility_score: torch.Tensor, count: int) -> list[Camera]:
    """Greedy: visibility score (normalised to the best candidate) + 0.5 * angular distance to the picked ones / pi.

    Candidates under 5% of the best visibility are skipped while better ones remain."""
    if len(candidates) <= count:
        return candidates
    directions = torch.stack([_direction(camera) for camera in candidates])
    visibility = visibility_score.double() / max(float(visibility_score.max()), 1e-12)
    chosen: list[int] = []
    min_angle = torch.full((len(candidates),), math.pi, dtype=torch.float64)
    poor = visibility < MIN_RELATIVE_VISIBILITY
    for _ in range(count):
        score = visibility + 0.5 * min_angle / math.pi
        if int((~poor).sum()) > len(chosen):
            score = torch.where(poor, -math.inf, score)
        if chosen:
            score[chosen] = -math.inf
        best = int(torch.argmax(score))
        chosen.append(best)
        angle = torch.arccos((directions @ directions[best]).clamp(-1.0, 1.0))
        min_angle = torch.minimum(min_angle, angle)
    return [candidates[index] for index in chosen]


@dataclass(frozen=True)
class ViewPlan:
    """How one instance is shot: `count` cameras whose views show its bounding sphere `footprint` pixels wide,
    or, when even one view cannot hold it at the wanted pixel density, `count` close-ups at that density."""

    count: int
    footprint: int
    closeup: bool


def surface_area(scene: Scene, instance: Instance) -> float:
    """The instance's surface area in square metres (sum of its triangles)."""
    corners = scene.positions.double()[scene.faces[instance.face_mask.to(torch.bool)]]
    return float(torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=1).sum()) / 2


def view_plan(scene: Scene, instance: Instance, *, count: int, resolution: int, pixels_per_metre: float,
              min_count: int, max_count: int, margin: float) -> ViewPlan:
    """Views for one instance from its size and the wanted pixel density (0: `count` framed views, the old way).

    Why: the texture's cost and quality follow texels, not parts. A bulb framed at 128 px wastes pixels and
    a wall framed whole gets too few, so at a density of `pixels_per_metre` an instance whose bounding sphere
    spans `footprint` pixels needs about COVERAGE x area x density^2 pixels of views, each showing about
    VIEW_FILL of its frame. A small instance is framed smaller (its crop, and so its distillation, is cheaper)
    and gets `min_count` views; one larger than a view at the density gets close-ups, more the larger it is."""
    if pixels_per_metre <= 0:
        return ViewPlan(count, resolution, False)
    radius = max(float((instance.bbox[1] - instance.bbox[0]).norm()) / 2, 1e-3)
    wanted = 2 * margin * radius * pixels_per_metre  # pixels across the bounding sphere at the density
    footprint = min(max(wanted, MIN_FOOTPRINT), resolution)
    needed = COVERAGE * surface_area(scene, instance) * pixels_per_metre**2 / (VIEW_FILL * footprint**2)
    return ViewPlan(min(max(math.ceil(needed), min_count), max_count), round(footprint), wanted > resolution)


def _reframed(camera: Camera, instance: Instance, margin: float, resolution: int, footprint: int) -> Camera:
    """The camera moved along its axis so that the instance's bounding sphere spans `footprint` pixels."""
    radius = max(float((instance.bbox[1] - instance.bbox[0]).norm()) / 2, 1e-3)
    distance = framing_distance(radius, camera.fov_y, margin) * resolution / footprint
    eye = camera.target.double() + _direction(camera) * distance
    return Camera(eye=eye.float(), target=camera.target, fov_y=camera.fov_y, near=max(1e-3, 0.01 * distance),
                  far=distance + 4 * radius + 1.0)


def rasterize_faces(rasterizer: Rasterizer, positions: torch.Tensor, faces: torch.Tensor, mvp: torch.Tensor,
                    resolution: int, face_ids: torch.Tensor | None = None,
                    attributes: torch.Tensor | Sequence[torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`rast` (and the interpolated `attributes` when given) of `faces[face_ids]` only (all faces when None),
    with triangle ids of the whole scene, so that the views' layout does not depend on what was drawn.

    With `face_ids`, only the vertices those faces use go to the rasterizer: its cost (vertex transform per
    view, BVH input) then follows the drawn part, not the scene it sits in (issue 14: one instance's views
    must not cost more in a room of 200). `attributes` may come in parts `[V, C_i]`, joined after that cut.
    """
    shown = faces if face_ids is None else faces[face_ids]
    parts = [] if attributes is None else [attributes] if isinstance(attributes, torch.Tensor) else list(attributes)
    if face_ids is not None:
        used, local = torch.unique(shown, return_inverse=True)
        positions, shown = positions[used], local.reshape(shown.shape)
        parts = [part[used] for part in parts]
    attributes = torch.cat([part.float() for part in parts], dim=1).cpu() if parts else None
    size = (resolution, resolution)
    fused = getattr(rasterizer, "rasterize_world_interpolate", None) if attributes is not None else None
    if fused is not None:  # the embree backend interpolates in the same pass
        rast, interpolated = fused(positions, shown.to(torch.int32), mvp, size, attributes)
    else:
        rast = rasterizer.rasterize_world(positions, shown.to(torch.int32), mvp, size).cpu()
        interpolated = interpolate(attributes, rast.float(), shown) if attributes is not None else None
    if face_ids is not None:
        local = rast[..., 3].round().long()
        scene_id = torch.where(local > 0, face_ids[(local - 1).clamp(min=0)] + 1, torch.zeros_like(local))
        rast = torch.cat([rast[..., :3], scene_id[..., None].to(rast.dtype)], dim=-1)
    return rast, interpolated


def _own_faces(owner: torch.Tensor, index: int, isolate: bool) -> torch.Tensor | None:
    return torch.nonzero(owner == index).flatten() if isolate else None


def _instance_cameras(arrays: _SceneArrays, rasterizer: Rasterizer, index: int, name: str, instance: Instance,
                      plan: ViewPlan, opts: _Options) -> list[Camera]:
    """The picked orbit cameras of one instance (scored on its visible area), or its close-ups."""
    if plan.closeup:
        return closeup_cameras(arrays.scene, instance, plan.count, opts.resolution, 1.0 / opts.pixels_per_metre,
                               seed=opts.seed, fov=sum(opts.fov) / 2)
    generator = torch.Generator().manual_seed(_instance_seed(opts.seed, name))
    candidates, preference = candidate_cameras(arrays.scene, instance, plan.count, opts.elevation, opts.fov, opts.margin,
                                               generator)
    mvp, _, _ = _view_matrices(candidates, SCORING_RESOLUTION)
    rast, _ = rasterize_faces(rasterizer, arrays.positions, arrays.faces, mvp, SCORING_RESOLUTION,
                              _own_faces(arrays.owner, index, opts.isolate))
    triangle = rast.cpu()[..., 3].round().long() - 1
    on_instance = (triangle >= 0) & (arrays.owner[triangle.clamp(min=0)] == index)
    # Back faces count a quarter: a wall seen from outside the room is the wrong side, even though it
    # is rasterized (no culling, as nvdiffrast).
    eyes = torch.stack([camera.eye for camera in candidates]).double()  # [C, 3]
    pixel_face = triangle.clamp(min=0)
    front = (torch.einsum("chwk,ck->chw", arrays.face_normal[pixel_face], eyes) - arrays.face_offset[pixel_face]) > 0
    visible = (on_instance * torch.where(front, 1.0, 0.25)).flatten(1).sum(dim=1).double()
    # Pixels scale with 1/distance^2: normalise to the framing distance, so that a close-up that crops the
    # instance does not beat a view of all of it; then prefer the framed distance on ties.
    scale = torch.tensor([_distance_scale(camera, instance, opts.margin) for camera in candidates],
                         dtype=torch.float64)
    picked = pick_cameras(candidates, visible * scale.square() * (0.8 + 0.2 * scale) * preference, plan.count)
    if opts.pixels_per_metre > 0:
        picked = [_reframed(camera, instance, opts.margin, opts.resolution, plan.footprint) for camera in picked]
    return picked


@dataclass(frozen=True)
class _Options:
    resolution: int
    elevation: tuple[float, float]
    fov: tuple[float, float]
    margin: float
    seed: int
    isolate: bool
    pixels_per_metre: float


@dataclass(frozen=True)
class _SceneArrays:
    scene: Scene
    positions: torch.Tensor
    faces: torch.Tensor
    owner: torch.Tensor
    face_normal: torch.Tensor
    face_offset: torch.Tensor


def _scene_arrays(scene: Scene, instances: Mapping[str, Instance]) -> _SceneArrays:
    positions = scene.positions.float().cpu()
    faces = scene.faces.cpu()
    corners = positions.double()[faces]
    face_normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # [F, 3]
    return _SceneArrays(scene, positions, faces, face_instance_map(faces.shape[0], instances), face_normal,
                        (face_normal * corners.mean(dim=1)).sum(dim=1))  # n . centroid


def sample_views(scene: Scene, instances: Mapping[str, Instance], *, count: int = 8, resolution: int = 128,
                 elevation: tuple[float, float] = (10.0, 50.0), fov: tuple[float, float] = (35.0, 50.0),
                 room_camera_count: int = 0, backend: BackendName = "auto", seed: int = 0, margin: float = 1.1,
                 device: torch.device | str | None = None, rasterizer: Rasterizer | None = None,
                 isolate: bool = False, pixels_per_metre: float = 0.0, min_count: int = 4,
                 max_count: int = 32) -> Views:
    """Cameras per instance (+ room cameras) and the scene's fragments seen by each.

    `isolate`: each instance's own cameras are scored and rasterized with only that instance's faces; the
    room cameras still see the whole scene. Why alone rather than a near plane clipped past occluders: for
    texturing, what the prior needs is the instance itself; others in front of it only hide texels (a bulb
    inside a closed shade has no clipping distance that shows it from outside without cutting the shade's
    far side into the view too), and its texture does not depend on what stands around it.
    `pixels_per_metre` > 0: the number of views and the instance's size in them follow its size and this
    density (`view_plan`; `count` is then unused, `min_count`..`max_count` bound it). 0 (default): `count`
    framed views each, exactly as before."""
    plans = {name: view_plan(scene, instance, count=count, resolution=resolution, pixels_per_metre=pixels_per_metre,
                             min_count=min_count, max_count=max_count, margin=margin)
             for name, instance in instances.items()}
    if sum(plan.count for plan in plans.values()) + room_camera_count == 0:
        raise UserError("no cameras to render: count is 0 (or there are no instances) and room_cameras is 0",
                        param="count", hint="set count >= 1 or room_cameras >= 1")
    rasterizer = rasterizer or get_rasterizer(backend, device)
    arrays = _scene_arrays(scene, instances)
    opts = _Options(resolution, elevation, fov, margin, seed, isolate, pixels_per_metre)
    groups: list[tuple[list[Camera], torch.Tensor | None]] = []
    targets: list[str] = []
    for index, (name, instance) in enumerate(instances.items()):
        if plans[name].count == 0:
            continue
        picked = _instance_cameras(arrays, rasterizer, index, name, instance, plans[name], opts)
        groups.append((picked, _own_faces(arrays.owner, index, isolate)))
        targets += [name] * len(picked)
    if room_camera_count:
        generator = torch.Generator().manual_seed(_instance_seed(seed, ""))
        lo = arrays.positions.min(dim=0).values
        hi = arrays.positions.max(dim=0).values
        groups.append((room_cameras(lo, hi, room_camera_count, fov, generator), None))
        targets += [""] * room_camera_count
    return _render_groups(arrays, rasterizer, groups, resolution, tuple(instances.keys()), tuple(targets))


def _render_groups(arrays: _SceneArrays, rasterizer: Rasterizer, groups: list[tuple[list[Camera], torch.Tensor | None]],
                   resolution: int, names: tuple[str, ...], targets: tuple[str, ...]) -> Views:
    """Rasterize every camera (one batch when all see the whole scene), then pack the views."""
    if all(face_ids is None for _, face_ids in groups):  # the whole scene in one pass
        groups = [([camera for cameras, _ in groups for camera in cameras], None)]
    scene = arrays.scene
    attributes = torch.cat([scene.uvs.float(), scene.normals.float(), scene.positions.float()], dim=1).cpu()
    rasts, interpolated = [], []
    for cameras, face_ids in groups:
        mvp, _, _ = _view_matrices(cameras, resolution)
        rast, values = rasterize_faces(rasterizer, arrays.positions, arrays.faces, mvp, resolution, face_ids,
                                       attributes)
        assert values is not None
        rasts.append(rast.cpu().float())
        interpolated.append(values.cpu().float())
    mvp, world_to_cam, k = _view_matrices([camera for cameras, _ in groups for camera in cameras], resolution)
    return fragments_to_views(torch.cat(rasts), torch.cat(interpolated), arrays.owner, mvp, world_to_cam, k,
                              names, targets)


def closeup_cameras(scene: Scene, instance: Instance, count: int, resolution: int, metres_per_pixel: float,
                    seed: int = 0, fov: float = 40.0) -> list[Camera]:
    """Cameras looking straight at `count` random points of an instance (area-weighted, seeded), from where
    one pixel spans `metres_per_pixel` at the centre. The near plane sits at 80% of that distance, so
    geometry in front of the surface (a sofa over the floor, a shade around a bulb) is clipped away."""
    faces = torch.nonzero(instance.face_mask).flatten()
    corners = scene.positions.double()[scene.faces[faces]]  # [F, 3, 3]
    cross = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = cross.norm(dim=1)
    generator = torch.Generator().manual_seed(_instance_seed(seed, instance.name))
    chosen = torch.multinomial(area / area.sum(), count, replacement=True, generator=generator)
    r = torch.rand(count, 2, generator=generator, dtype=torch.float64)
    r = torch.where((r.sum(1) > 1)[:, None], 1 - r, r)
    tri = corners[chosen]
    point = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    normal = scene.normals.double()[scene.faces[faces[chosen]]].mean(1)
    normal = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12)
    distance = resolution * metres_per_pixel / (2 * math.tan(math.radians(fov) / 2))
    return [Camera(eye=(point[i] + distance * normal[i]).float(), target=point[i].float(), fov_y=fov,
                   near=0.8 * distance, far=4.0 * distance) for i in range(count)]


def render_cameras(scene: Scene, instances: Mapping[str, Instance], cameras: list[Camera], targets: tuple[str, ...],
                   resolution: int, backend: BackendName = "auto", isolate: bool = False) -> Views:
    """The scene's fragments seen by given cameras (the last step of `sample_views`); with `isolate`, only the
    faces of `instances` are drawn (nothing else occludes them, and the cost follows them, not the scene)."""
    rasterizer = get_rasterizer(backend, None)
    positions = scene.positions.float().cpu()
    faces = scene.faces.cpu()
    owner = face_instance_map(faces.shape[0], instances)
    mvp, world_to_cam, k = _view_matrices(cameras, resolution)
    face_ids = torch.nonzero(owner >= 0).flatten() if isolate else None
    rast, interpolated = rasterize_faces(rasterizer, positions, faces, mvp, resolution, face_ids,
                                         (scene.uvs, scene.normals, scene.positions))
    assert interpolated is not None
    return fragments_to_views(rast.cpu().float(), interpolated.cpu().float(), owner, mvp, world_to_cam, k,
                              tuple(instances.keys()), targets)


def fragments_to_views(rast: torch.Tensor, interpolated: torch.Tensor, owner: torch.Tensor, mvp: torch.Tensor,
                       world_to_cam: torch.Tensor, k: torch.Tensor, instance_names: tuple[str, ...],
                       view_target: tuple[str, ...]) -> Views:
    """Pack a `Views` from `rast` and the interpolated (uv, normal, position) `[B, H, W, 8]`."""
    covered = rast[..., 3] > 0
    uv = interpolated[..., 0:2].contiguous()
    normal = F.normalize(interpolated[..., 2:5], dim=-1)
    position = interpolated[..., 5:8].contiguous()
    camera_z = torch.einsum("bj,bhwj->bhw", world_to_cam[:, 2, :3], position) + world_to_cam[:, 2, 3].view(-1, 1, 1)
    depth = torch.where(covered, -camera_z, torch.zeros_like(camera_z))
    triangle = rast[..., 3].round().long() - 1
    instance_id = torch.where(covered, owner[triangle.clamp(min=0)], torch.full_like(triangle, -1))
    return Views(rast=rast.contiguous(), uv=uv, normal=normal, position=position, depth=depth,
                 instance_id=instance_id, mvp=mvp.float(), world_to_cam=world_to_cam.float(),
                 intrinsics=k.float(), instance_names=instance_names, view_target=view_target)


__all__ = ["ViewPlan", "candidate_cameras", "closeup_cameras", "face_instance_map", "fragments_to_views", "mean_normal",
           "pick_cameras", "rasterize_faces", "render_cameras", "sample_views", "surface_area", "view_plan"]
