"""A scene of simple shapes with procedural swatches of known real size, to judge textures by.

`shapes_scene()` builds: a wood cabinet (a box), a striped stool (a
cylinder), a checker floor (a 4 m plane), a dotted ball (a UV sphere) and a
metal plate with a noise pattern (a thin box), each its own part with its
own non-overlapping UV atlas, and `shapes_references()` their swatches with a
`size` each. Stripes, checker and dots repeat an integer number of times
across their image, so the swatch repeated at its size is seamless; the wood
and the noise are not periodic. Used by tests, the quality bench and the
figure script; also a quick scene to try graphflow on.
"""
from __future__ import annotations

import math

import kornia
import numpy as np
import torch

from graphflow import Keyed

from nodes.scene.demo_room import DemoInstance, Quad, box, instance_mesh, pack_islands
from nodes.scene.gltf import MeshPart
from nodes.scene.loader import assemble_scene
from nodes.scene.patterns import fractal_noise, wood_grain
from nodes.types import Reference, Scene

SWATCH_PIXELS = 256


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


def _two_tone(t: torch.Tensor, a: tuple[float, float, float], b: tuple[float, float, float]) -> torch.Tensor:
    ca, cb = torch.tensor(a)[:, None, None], torch.tensor(b)[:, None, None]
    return ca * (1 - t) + cb * t


def stripes(size: int = SWATCH_PIXELS, periods: int = 4) -> torch.Tensor:
    """Vertical navy / cream stripes, `periods` pairs across (sRGB)."""
    x, _ = _grid(size)
    return _two_tone(((x * periods) % 1.0 < 0.5).float(), (0.93, 0.89, 0.78), (0.12, 0.17, 0.38))


def checker(size: int = SWATCH_PIXELS, squares: int = 4) -> torch.Tensor:
    """A charcoal / ivory checkerboard, `squares` x `squares` (sRGB)."""
    x, y = _grid(size)
    on = ((torch.floor(x * squares) + torch.floor(y * squares)) % 2).float()
    return _two_tone(on, (0.92, 0.90, 0.84), (0.16, 0.16, 0.17))


def dots(size: int = SWATCH_PIXELS, cells: int = 3, radius: float = 0.3) -> torch.Tensor:
    """Red round dots on white, `cells` x `cells` (sRGB)."""
    x, y = _grid(size)
    dx, dy = (x * cells) % 1.0 - 0.5, (y * cells) % 1.0 - 0.5
    return _two_tone(((dx**2 + dy**2) < radius**2).float(), (0.95, 0.94, 0.92), (0.75, 0.10, 0.12))


def wood(size: int = SWATCH_PIXELS, seed: int = 3) -> torch.Tensor:
    return wood_grain(torch.Generator().manual_seed(seed), size)


def metal_noise(size: int = SWATCH_PIXELS, seed: int = 5) -> torch.Tensor:
    """Cool grey metal with a cloudy fractal noise (sRGB)."""
    noise = fractal_noise(torch.Generator().manual_seed(seed), size, 4, 4)
    base = torch.tensor([0.55, 0.57, 0.60])[:, None, None]
    return (base * (0.75 + 0.5 * noise)).clamp(0, 1)


# name -> (swatch, material class, metres the image spans)
SWATCHES = {
    "cabinet": (wood, "wood", 0.8),
    "stool": (stripes, "fabric", 0.4),
    "floor": (checker, "ceramic", 0.5),
    "ball": (dots, "plastic", 0.3),
    "plate": (metal_noise, "metal", 0.5),
}


def _linear(srgb: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_linear_rgb(srgb.clamp(0, 1)).contiguous()


def shapes_references() -> Keyed[Reference]:
    return Keyed({name: Reference(images=(_linear(make()),), material=material, size=size)
                  for name, (make, material, size) in SWATCHES.items()})


def _part(name: str, material: str, positions: list, normals: list, uvs: list, faces: list) -> MeshPart:
    return MeshPart(name=name, info={"node": name, "mesh": name, "primitive": 0, "material": material},
                    positions=np.asarray(positions, np.float32), faces=np.asarray(faces, np.int64),
                    normals=np.asarray(normals, np.float32), uvs=np.asarray(uvs, np.float32))


def cylinder(name: str, centre: tuple[float, float, float], radius: float, height: float,
             segments: int = 48) -> MeshPart:
    """An open-bottom cylinder: its side unrolled into one rectangle (seam at angle 0) and a top disc."""
    circumference = 2 * math.pi * radius
    (side_o, top_o), side = pack_islands([(circumference, height), (2 * radius, 2 * radius)])
    cx, cy, cz = centre
    positions, normals, uvs, faces = [], [], [], []
    for i in range(segments + 1):
        angle = 2 * math.pi * i / segments
        nx, nz = math.cos(angle), -math.sin(angle)  # counter-clockwise seen from above, u grows that way
        for j, y in enumerate((cy + height, cy)):
            positions.append((cx + radius * nx, y, cz + radius * nz))
            normals.append((nx, 0.0, nz))
            uvs.append(((side_o[0] + circumference * i / segments) / side, (side_o[1] + height * j) / side))
    for i in range(segments):
        a, b, c, d = 2 * i, 2 * i + 1, 2 * i + 3, 2 * i + 2
        faces += [(a, b, c), (a, c, d)]
    centre_index = len(positions)
    positions.append((cx, cy + height, cz))
    normals.append((0.0, 1.0, 0.0))
    uvs.append(((top_o[0] + radius) / side, (top_o[1] + radius) / side))
    for i in range(segments + 1):
        angle = 2 * math.pi * i / segments
        px, pz = radius * math.cos(angle), -radius * math.sin(angle)
        positions.append((cx + px, cy + height, cz + pz))
        normals.append((0.0, 1.0, 0.0))
        uvs.append(((top_o[0] + radius + px) / side, (top_o[1] + radius + pz) / side))
    for i in range(segments):
        faces.append((centre_index, centre_index + 1 + i, centre_index + 2 + i))
    return _part(name, "stool fabric", positions, normals, uvs, faces)


def uv_sphere(name: str, centre: tuple[float, float, float], radius: float, rings: int = 24,
              segments: int = 48) -> MeshPart:
    """A latitude-longitude sphere: one chart, stretched at the poles."""
    positions, normals, uvs, faces = [], [], [], []
    for j in range(rings + 1):
        theta = math.pi * j / rings
        for i in range(segments + 1):
            phi = 2 * math.pi * i / segments
            n = (math.sin(theta) * math.cos(phi), math.cos(theta), -math.sin(theta) * math.sin(phi))
            positions.append(tuple(c + radius * v for c, v in zip(centre, n, strict=True)))
            normals.append(n)
            uvs.append((i / segments, j / rings))
    width = segments + 1
    for j in range(rings):
        for i in range(segments):
            a, b, c, d = j * width + i, (j + 1) * width + i, (j + 1) * width + i + 1, j * width + i + 1
            faces += [(a, b, c), (a, c, d)]
    return _part(name, "ball plastic", positions, normals, uvs, faces)


def shapes_scene() -> Scene:
    """The five shapes (module docstring), metres, +Y up, resting on the floor."""
    y_axis, z_axis = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    floor = DemoInstance("floor", "ceramic", "floor checker", "", "",
                         (Quad((-2.0, 0.0, -2.0), (1.0, 0.0, 0.0), z_axis, 4.0, 4.0, y_axis, (8, 8)),))
    cabinet = DemoInstance("cabinet", "wood", "cabinet wood", "", "", tuple(box((-1.1, 0.5, -0.9), (0.8, 1.0, 0.5))))
    plate = DemoInstance("plate", "metal", "plate metal", "", "", tuple(box((1.0, 0.01, -0.9), (0.6, 0.02, 0.4))))
    parts = [instance_mesh(floor), instance_mesh(cabinet), cylinder("stool", (0.0, 0.0, 0.2), 0.2, 0.45),
             uv_sphere("ball", (1.1, 0.25, 0.7), 0.25), instance_mesh(plate)]
    return assemble_scene(parts, unwrap_mode="never", source="shapes")
