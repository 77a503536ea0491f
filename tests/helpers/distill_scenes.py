"""Small synthetic inputs for tests of the distillation stage.

`flat_quads(names, views_per_instance, resolution)` builds a `Scene` of one
unit quad per instance (each with UVs over the whole [0, 1]² atlas) and a
`Views` whose pixels look straight at each quad: the interpolated UV of a
pixel is an affine function of its coordinates (a per-view zoom and offset),
the instance covers the whole image but a margin. No rasterizer needed.
Also procedural reference images with distinct colour and structure.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from graphflow import Keyed
from nodes.types import Instance, Reference, Scene, Views


def flat_quads(names: Sequence[str], views_per_instance: int = 4, resolution: int = 64,
               margin: int = 4) -> tuple[Scene, Keyed[Instance], Views]:
    n = len(names)
    positions, faces, uvs, face_part = [], [], [], []
    for i in range(n):
        x0 = 1.5 * i
        positions += [[x0, 0, 0], [x0 + 1, 0, 0], [x0 + 1, 1, 0], [x0, 1, 0]]
        uvs += [[0, 1], [1, 1], [1, 0], [0, 0]]
        faces += [[4 * i, 4 * i + 1, 4 * i + 2], [4 * i, 4 * i + 2, 4 * i + 3]]
        face_part += [i, i]
    pos = torch.tensor(positions, dtype=torch.float32)
    normals = torch.tensor([[0, 0, 1]] * len(positions), dtype=torch.float32)
    tangents = torch.tensor([[1, 0, 0, 1]] * len(positions), dtype=torch.float32)
    scene = Scene(positions=pos, faces=torch.tensor(faces), normals=normals, uvs=torch.tensor(uvs, dtype=torch.float32),
                  tangents=tangents, face_part=torch.tensor(face_part), part_names=tuple(names),
                  part_info=tuple({"node": nm, "mesh": nm, "primitive": 0, "material": nm} for nm in names))
    instances = Keyed({nm: Instance(name=nm, face_mask=torch.tensor(face_part) == i, bbox=torch.stack(
        [pos[4 * i:4 * i + 4].min(0).values, pos[4 * i:4 * i + 4].max(0).values]), material="generic")
        for i, nm in enumerate(names)})
    r = resolution
    ys, xs = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    count = n * views_per_instance
    uv = torch.zeros(count, r, r, 2)
    inst = torch.full((count, r, r), -1, dtype=torch.int64)
    rast = torch.zeros(count, r, r, 4)
    targets = []
    inside = (xs >= margin) & (xs < r - margin) & (ys >= margin) & (ys < r - margin)
    for i in range(n):
        for k in range(views_per_instance):
            b = i * views_per_instance + k
            zoom = 0.55 + 0.4 * k / max(1, views_per_instance - 1)
            angle = 0.3 * k
            u = (xs + 0.5) / r - 0.5
            v = (ys + 0.5) / r - 0.5
            uu = 0.5 + zoom * (math.cos(angle) * u - math.sin(angle) * v)
            vv = 0.5 + zoom * (math.sin(angle) * u + math.cos(angle) * v)
            uv[b] = torch.stack([uu, vv], -1).clamp(0, 1)
            inst[b][inside] = i
            rast[b][inside] = torch.tensor([0.3, 0.3, 0.5, float(2 * i + 1)])
            targets.append(names[i])
    eye = torch.eye(4).expand(count, 4, 4).clone()
    views = Views(rast=rast, uv=uv, normal=torch.zeros(count, r, r, 3), position=torch.zeros(count, r, r, 3),
                  depth=(inst >= 0).float(), instance_id=inst, mvp=eye, world_to_cam=eye.clone(),
                  intrinsics=torch.eye(3).expand(count, 3, 3).clone(), instance_names=tuple(names),
                  view_target=tuple(targets))
    return scene, instances, views


def procedural_reference(kind: str, size: int = 96, seed: int = 0) -> torch.Tensor:
    """A `[3, size, size]` texture in [0, 1]: `stripes`, `checker`, `dots` or `noise`."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    if kind == "stripes":
        s = 0.5 + 0.5 * torch.sin(x / 2.5)
        img = torch.stack([0.7 * s + 0.2, 0.4 * s + 0.1, 0.1 + 0 * s])
    elif kind == "checker":
        c = ((x // 12 + y // 12) % 2).float()
        img = torch.stack([0.1 + 0.2 * c, 0.3 + 0.5 * c, 0.6 + 0.3 * c])
    elif kind == "dots":
        d = ((x % 16 - 8) ** 2 + (y % 16 - 8) ** 2 < 16).float()
        img = torch.stack([0.9 - 0.6 * d, 0.85 - 0.7 * d, 0.8 - 0.1 * d])
    elif kind == "noise":
        n = torch.rand(1, 1, size // 4, size // 4, generator=g)
        n = torch.nn.functional.interpolate(n, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        img = torch.stack([0.3 + 0.4 * n, 0.2 + 0.3 * n, 0.1 + 0.2 * n])
    else:
        raise ValueError(kind)
    return img.clamp(0, 1).contiguous()


def procedural_references(names: Sequence[str], kinds: Sequence[str], size: int = 96) -> Keyed[Reference]:
    return Keyed({nm: Reference(images=(procedural_reference(kind, size, seed=i),), material="generic")
                  for i, (nm, kind) in enumerate(zip(names, kinds, strict=True))})
