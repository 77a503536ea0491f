"""Cameras: OpenGL-style view and projection matrices, intrinsics, and camera placement.

Conventions: world +Y up; a camera looks down its -Z axis with +Y up (OpenGL),
`world_to_cam` maps world to camera coordinates, `perspective` maps camera to
clip space with z/w in [-1, 1] between the near and far planes. Angles are in
degrees. The intrinsics K are the usual pixel-space matrix for an image whose
row 0 is the *top* (computer-vision convention, camera x right, y down, z
forward); nvdiffrast's arrays have row 0 at the bottom, so flip rows
(`rast.flip(1)`) before using K on them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera `[4, 4]` for a camera at `eye` looking at `target` (OpenGL: looks down -Z)."""
    eye = eye.double()
    target = target.double()
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) if up is None else up.double()
    forward = target - eye
    forward = forward / forward.norm().clamp(min=1e-12)
    if torch.cross(forward, up, dim=0).norm() < 1e-6:  # looking straight up/down: any horizontal "up" works
        up = torch.tensor([0.0, 0.0, -1.0 if forward[1] < 0 else 1.0], dtype=torch.float64)
    right = torch.cross(forward, up, dim=0)
    right = right / right.norm()
    true_up = torch.cross(right, forward, dim=0)
    rotation = torch.stack([right, true_up, -forward])
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ eye
    return matrix.float()


def perspective(fov_y: float, aspect: float, near: float, far: float) -> torch.Tensor:
    """OpenGL projection `[4, 4]` (camera -> clip) for a vertical field of view `fov_y` in degrees."""
    focal = 1.0 / math.tan(math.radians(fov_y) / 2)
    matrix = torch.zeros(4, 4, dtype=torch.float64)
    matrix[0, 0] = focal / aspect
    matrix[1, 1] = focal
    matrix[2, 2] = (far + near) / (near - far)
    matrix[2, 3] = 2 * far * near / (near - far)
    matrix[3, 2] = -1.0
    return matrix.float()


def intrinsics(fov_y: float, width: int, height: int) -> torch.Tensor:
    """Pixel-space K `[3, 3]` matching `perspective(fov_y, width / height, ...)` (row 0 at the top)."""
    focal = height / (2 * math.tan(math.radians(fov_y) / 2))
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Camera:
    """One pinhole camera: where it is, what it looks at, its vertical fov (degrees) and clip planes."""

    eye: torch.Tensor  # [3]
    target: torch.Tensor  # [3]
    fov_y: float
    near: float
    far: float

    def world_to_cam(self) -> torch.Tensor:
        return look_at(self.eye, self.target)

    def projection(self, aspect: float = 1.0) -> torch.Tensor:
        return perspective(self.fov_y, aspect, self.near, self.far)

    def mvp(self, aspect: float = 1.0) -> torch.Tensor:
        return (self.projection(aspect).double() @ self.world_to_cam().double()).float()


def framing_distance(radius: float, fov_y: float, margin: float = 1.1) -> float:
    """Distance at which a sphere of `radius` fills the vertical fov, times `margin` (> 1 leaves a border)."""
    return margin * radius / math.sin(math.radians(fov_y) / 2)


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


def orbit_cameras(center: torch.Tensor, radius: float, count: int, elevation_range: tuple[float, float],
                  fov_range: tuple[float, float], generator: torch.Generator, margin: float = 1.1,
                  azimuth_center: float = 0.0, azimuth_span: float = 360.0,
                  distance_scale: tuple[float, float] = (1.0, 1.0), axis: torch.Tensor | None = None
                  ) -> list[Camera]:
    """`count` cameras looking at `center`, framing a sphere of `radius`.

    Azimuths are stratified over `azimuth_span` degrees around `azimuth_center`
    (0 = +Z, 90 = +X) with a random jitter; elevations (degrees above the plane
    orthogonal to `axis`, default world +Y) and fovs are uniform in their
    ranges; the distance frames the sphere, times a factor in `distance_scale`.
    """
    center = center.double()
    axis = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) if axis is None else axis.double()
    axis = axis / axis.norm()
    # An orthonormal frame (side, axis, front) with side = +X, front = +Z when axis = +Y.
    helper = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(axis @ helper)) > 0.9:
        helper = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    side = helper - (helper @ axis) * axis
    side = side / side.norm()
    front = torch.cross(side, axis, dim=0)
    jitter = torch.rand(count, generator=generator, dtype=torch.float64)
    strata = (torch.arange(count, dtype=torch.float64) + jitter) / max(count, 1)
    azimuths = azimuth_center - azimuth_span / 2 + azimuth_span * strata
    elevations = _uniform(elevation_range[0], elevation_range[1], count, generator)
    fovs = _uniform(fov_range[0], fov_range[1], count, generator)
    scales = _uniform(distance_scale[0], distance_scale[1], count, generator)
    cameras = []
    for azimuth, elevation, fov, scale in zip(azimuths.tolist(), elevations.tolist(), fovs.tolist(), scales.tolist(),
                                              strict=True):
        distance = framing_distance(radius, fov, margin) * scale
        az, el = math.radians(azimuth), math.radians(elevation)
        direction = math.cos(el) * (math.cos(az) * front + math.sin(az) * side) + math.sin(el) * axis
        eye = center + distance * direction
        near = max(1e-3, 0.01 * distance)
        far = distance + 4 * radius + 1.0
        cameras.append(Camera(eye=eye.float(), target=center.float(), fov_y=fov, near=near, far=far))
    return cameras


def room_cameras(scene_min: torch.Tensor, scene_max: torch.Tensor, count: int, fov_range: tuple[float, float],
                 generator: torch.Generator, eye_height: tuple[float, float] = (1.2, 1.7)) -> list[Camera]:
    """`count` cameras inside the scene's bounding box looking across it, as a person standing in the room.

    Eyes are in the middle 70% of the floor plan at `eye_height` metres above the
    floor (the bbox bottom; clipped below the top); each looks at a point on the
    far side of the room's centre, lower than the eye.
    """
    scene_min = scene_min.double()
    scene_max = scene_max.double()
    size = scene_max - scene_min
    center = (scene_min + scene_max) / 2
    floor, top = float(scene_min[1]), float(scene_max[1])
    cameras = []
    heights = _uniform(eye_height[0], eye_height[1], count, generator)
    offsets = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.7 - 0.35
    fovs = _uniform(fov_range[0], fov_range[1], count, generator)
    target_heights = torch.rand(count, generator=generator, dtype=torch.float64) * 0.4
    diagonal = float(size.norm())
    for index in range(count):
        eye = center.clone()
        eye[0] = center[0] + offsets[index, 0] * size[0]
        eye[2] = center[2] + offsets[index, 1] * size[2]
        eye[1] = min(floor + float(heights[index]), floor + 0.9 * float(size[1])) if top > floor else floor + 1.5
        target = center.clone()
        target[0] = center[0] - offsets[index, 0] * size[0] * 0.8
        target[2] = center[2] - offsets[index, 1] * size[2] * 0.8
        if float((target - eye)[[0, 2]].norm()) < 1e-3:  # eye at the centre: look along +Z
            target[2] = eye[2] + 1.0
        target[1] = floor + float(target_heights[index]) * max(float(size[1]), 1e-3)
        cameras.append(Camera(eye=eye.float(), target=target.float(), fov_y=float(fovs[index]),
                              near=max(1e-3, 0.005 * diagonal), far=2 * diagonal + 1.0))
    return cameras


__all__ = ["Camera", "framing_distance", "intrinsics", "look_at", "orbit_cameras", "perspective", "room_cameras"]
