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
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from graphflow import UserError
from nodes.types import Instance, Scene, Views

from .cameras import Camera, framing_distance, intrinsics, orbit_cameras, room_cameras
from .ops import interpolate
from .raster import BackendName, Rasterizer, get_rasterizer

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


def sample_views(scene: Scene, instances: Mapping[str, Instance], *, count: int = 8, resolution: int = 128,
                 elevation: tuple[float, float] = (10.0, 50.0), fov: tuple[float, float] = (35.0, 50.0),
                 room_camera_count: int = 0, backend: BackendName = "auto", seed: int = 0, margin: float = 1.1,
                 device: torch.device | str | None = None, rasterizer: Rasterizer | None = None) -> Views:
    """Cameras per instance (+ room cameras) and the scene's fragments seen by each."""
    if count * len(instances) + room_camera_count == 0:
        raise UserError("no cameras to render: count is 0 (or there are no instances) and room_cameras is 0",
                        param="count", hint="set count >= 1 or room_cameras >= 1")
    rasterizer = rasterizer or get_rasterizer(backend, device)
    positions = scene.positions.float().cpu()
    faces = scene.faces.cpu()
    tri = faces.to(torch.int32)
    owner = face_instance_map(faces.shape[0], instances)
    corners = positions.double()[faces]
    face_normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # [F, 3]
    face_offset = (face_normal * corners.mean(dim=1)).sum(dim=1)  # n . centroid

    cameras: list[Camera] = []
    targets: list[str] = []
    for index, (name, instance) in enumerate(instances.items()):
        if count == 0:
            break
        generator = torch.Generator().manual_seed(_instance_seed(seed, name))
        candidates, preference = candidate_cameras(scene, instance, count, elevation, fov, margin, generator)
        mvp, _, _ = _view_matrices(candidates, SCORING_RESOLUTION)
        rast = rasterizer.rasterize_world(positions, tri, mvp, (SCORING_RESOLUTION, SCORING_RESOLUTION)).cpu()
        triangle = rast[..., 3].round().long() - 1
        on_instance = (triangle >= 0) & (owner[triangle.clamp(min=0)] == index)
        # Back faces count a quarter: a wall seen from outside the room is the wrong side, even though it
        # is rasterized (no culling, as nvdiffrast).
        eyes = torch.stack([camera.eye for camera in candidates]).double()  # [C, 3]
        pixel_face = triangle.clamp(min=0)
        front = (torch.einsum("chwk,ck->chw", face_normal[pixel_face], eyes) - face_offset[pixel_face]) > 0
        visible = (on_instance * torch.where(front, 1.0, 0.25)).flatten(1).sum(dim=1).double()
        # Pixels scale with 1/distance^2: normalise to the framing distance, so that a close-up that crops the
        # instance does not beat a view of all of it; then prefer the framed distance on ties.
        scale = torch.tensor([_distance_scale(camera, instance, margin) for camera in candidates], dtype=torch.float64)
        cameras += pick_cameras(candidates, visible * scale.square() * (0.8 + 0.2 * scale) * preference, count)
        targets += [name] * min(count, len(candidates))
    if room_camera_count:
        generator = torch.Generator().manual_seed(_instance_seed(seed, ""))
        lo = positions.min(dim=0).values
        hi = positions.max(dim=0).values
        cameras += room_cameras(lo, hi, room_camera_count, fov, generator)
        targets += [""] * room_camera_count

    mvp, world_to_cam, k = _view_matrices(cameras, resolution)
    attributes = torch.cat([scene.uvs.float(), scene.normals.float(), scene.positions.float()], dim=1).cpu()
    fused = getattr(rasterizer, "rasterize_world_interpolate", None)
    if fused is not None:  # the embree backend interpolates in the same pass
        rast, interpolated = fused(positions, tri, mvp, (resolution, resolution), attributes)
    else:
        rast = rasterizer.rasterize_world(positions, tri, mvp, (resolution, resolution)).cpu().float()
        interpolated = interpolate(attributes, rast, faces)
    return fragments_to_views(rast.cpu().float(), interpolated.cpu().float(), owner, mvp, world_to_cam, k,
                              tuple(instances.keys()), tuple(targets))


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


__all__ = ["candidate_cameras", "face_instance_map", "fragments_to_views", "mean_normal", "pick_cameras",
           "sample_views"]
