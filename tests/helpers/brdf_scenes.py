"""Small procedural scenes with known materials, for tests of the BRDF and export stages.

`sphere_on_floor`: a UV sphere (latitude-longitude atlas, v = 0 at the north
pole) resting on a square floor (planar atlas), two instances; the floor is
occluded around the contact point, the sphere sees every n·l.
`bake_known_material` renders a known material under a known light into an
appearance texture (the forward model of `nodes.brdf.decompose`).
"""
from __future__ import annotations

import math

import torch

from graphflow import Keyed

from nodes.export.tangents import vertex_tangents
from nodes.types import Instance, Scene

from nodes.brdf.baked import BakedLighting, render_baked
from nodes.brdf.texels import TexelGeometry, ambient_occlusion, texel_geometry


def _uv_sphere(rings: int, segments: int, radius: float, centre: tuple[float, float, float]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    theta = torch.linspace(0.0, math.pi, rings + 1)  # from the north pole (+Y)
    phi = torch.linspace(0.0, 2.0 * math.pi, segments + 1)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    normal = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], dim=-1)
    positions = normal * radius + torch.tensor(centre)
    uvs = torch.stack([p / (2.0 * math.pi), t / math.pi], dim=-1)
    faces = []
    width = segments + 1
    for i in range(rings):
        for j in range(segments):
            a, b = i * width + j, i * width + j + 1
            c, d = (i + 1) * width + j, (i + 1) * width + j + 1
            if i != 0:
                faces.append((a, c, b))
            if i != rings - 1:
                faces.append((b, c, d))
    return positions.reshape(-1, 3), normal.reshape(-1, 3), uvs.reshape(-1, 2), torch.tensor(faces)


def sphere_on_floor(rings: int = 24, segments: int = 48) -> tuple[Scene, Keyed[Instance]]:
    """The scene and its two instances, `sphere` (fabric hint) and `floor` (wood hint)."""
    s_pos, s_nrm, s_uv, s_faces = _uv_sphere(rings, segments, 0.5, (0.0, 0.5, 0.0))
    half = 1.5
    f_pos = torch.tensor([[-half, 0.0, -half], [half, 0.0, -half], [half, 0.0, half], [-half, 0.0, half]])
    f_nrm = torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3).clone()
    f_uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f_faces = torch.tensor([[0, 2, 1], [0, 3, 2]]) + s_pos.shape[0]
    positions = torch.cat([s_pos, f_pos]).to(torch.float32)
    normals = torch.cat([s_nrm, f_nrm]).to(torch.float32)
    uvs = torch.cat([s_uv, f_uv]).to(torch.float32)
    faces = torch.cat([s_faces, f_faces]).to(torch.int64)
    face_part = torch.cat([torch.zeros(s_faces.shape[0]), torch.ones(2)]).to(torch.int64)
    scene = Scene(
        positions=positions, faces=faces, normals=normals, uvs=uvs,
        tangents=vertex_tangents(positions, faces, normals, uvs), face_part=face_part,
        part_names=("sphere", "floor"),
        part_info=({"node": "sphere", "mesh": "sphere", "primitive": 0, "material": "fabric"},
                   {"node": "floor", "mesh": "floor", "primitive": 0, "material": "wood"}),
        source="synthetic:sphere_on_floor",
    )
    instances = {}
    for part, (name, material) in enumerate((("sphere", "fabric"), ("floor", "wood"))):
        mask = face_part == part
        verts = faces[mask].flatten()
        instances[name] = Instance(name=name, face_mask=mask,
                                   bbox=torch.stack([positions[verts].min(0).values, positions[verts].max(0).values]),
                                   material=material)
    return scene, Keyed(instances)


def checker_albedo(uv: torch.Tensor, colours: tuple[tuple[float, float, float], ...], cells: int = 6) -> torch.Tensor:
    """A checkerboard of two linear colours over uvs `[N, 2]` -> `[N, 3]`."""
    index = (torch.floor(uv[:, 0] * cells) + torch.floor(uv[:, 1] * cells)).to(torch.int64) % 2
    return torch.tensor(colours)[index]


DEFAULT_LIGHT = BakedLighting(0.35, torch.nn.functional.normalize(torch.tensor([0.5, 0.8, 0.3]), dim=0), 1.2)


def bake_known_material(scene: Scene, geometry: TexelGeometry, albedo: torch.Tensor, roughness: float,
                        metallic: float, *, lighting: BakedLighting = DEFAULT_LIGHT, ao_rays: int = 256,
                        light_samples: int = 128, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(appearance image `[3, H, W]`, the true AO `[N]`) of a material on `geometry`'s texels."""
    count = geometry.index.numel()
    generator = torch.Generator().manual_seed(seed)
    occlusion = ambient_occlusion(scene, geometry.position, geometry.normal, ao_rays, generator)
    radiance = render_baked(albedo, torch.full((count, 1), roughness), torch.full((count, 1), metallic),
                            geometry.normal, geometry.normal, occlusion, lighting, light_samples, generator)
    height, width = geometry.size
    image = torch.zeros(3, height * width)
    image[:, geometry.index] = radiance.T
    return image.reshape(3, height, width), occlusion


def instance_geometry(scene: Scene, instance: Instance, size: int) -> TexelGeometry:
    return texel_geometry(scene, instance.face_mask, (size, size))
