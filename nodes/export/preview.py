"""A contact sheet of a PBR asset: shaded views plus every instance's maps.

Row 1: `views` renders around the scene (pinhole cameras on a ring above
the scene's centre, one Embree ray per pixel through
`nodes.render.embree.RayCaster`), shaded with the GGX BRDF of
`nodes.brdf.ggx` under a key, a fill and a rim light plus an ambient sky
scaled by the baked occlusion, with the tangent-space normal maps applied.
Then one row per instance: albedo (sRGB), roughness, metallic, normal.
Deterministic: no randomness, PIL PNG with fixed settings.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from nodes.brdf.ggx import shade
from nodes.render.embree import RayCaster
from nodes.types import Instance, PBRMaps, Scene

from .gltf_writer import PNG_COMPRESS_LEVEL, dilated, linear_to_srgb

BACKGROUND = 0.18  # linear grey
LIGHTS = (  # direction (towards the light, world, +Y up) and irradiance
    ((0.55, 0.75, 0.45), 2.6),
    ((-0.6, 0.35, 0.3), 0.9),
    ((0.0, 0.45, -0.9), 1.2),
)
SKY = 0.25
FOV_Y = math.radians(40.0)


def _sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear REPEAT lookup `[C, H, W]` at glTF uvs `[N, 2]` -> `[N, C]`."""
    grid = ((uv - torch.floor(uv)) * 2.0 - 1.0).to(torch.float32)[None, None]
    return F.grid_sample(image[None].to(torch.float32), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[0, :, 0].T


def _camera_rays(eye: torch.Tensor, target: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    forward = F.normalize(target - eye, dim=0)
    right = F.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    up = torch.linalg.cross(right, forward)
    half = math.tan(FOV_Y / 2.0)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    ys, xs = torch.meshgrid(-coords * half, coords * half, indexing="ij")  # row 0 at the top
    dirs = forward[None, None] + xs[..., None] * right + ys[..., None] * up
    dirs = F.normalize(dirs.reshape(-1, 3), dim=-1)
    return eye[None].expand_as(dirs).contiguous(), dirs


def render_view(scene: Scene, caster: RayCaster, face_instance: torch.Tensor, maps: list[PBRMaps],
                eye: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """One shaded view `[3, size, size]` (linear RGB)."""
    origins, dirs = _camera_rays(eye, target, size)
    _, face, u, v = caster.intersect(origins, dirs)
    colour = torch.full((size * size, 3), BACKGROUND)
    hit = face >= 0
    inst = torch.full_like(face, -1)
    inst[hit] = face_instance[face[hit]]
    for index, pbr in enumerate(maps):
        sel = torch.nonzero(inst == index, as_tuple=False).flatten()
        if sel.numel() == 0:
            continue
        verts = scene.faces[face[sel]]
        bary = torch.stack([u[sel], v[sel], 1.0 - u[sel] - v[sel]], dim=-1)[..., None]
        uv = (scene.uvs[verts] * bary).sum(1)
        normal = F.normalize((scene.normals[verts] * bary).sum(1), dim=-1)
        view_dir = -dirs[sel]
        flip = (normal * view_dir).sum(-1, keepdim=True) < 0  # back faces seen from behind
        normal = torch.where(flip, -normal, normal)
        t4 = scene.tangents[verts]
        tangent = (t4[..., :3] * bary).sum(1)
        tangent = F.normalize(tangent - (tangent * normal).sum(-1, keepdim=True) * normal, dim=-1)
        bitangent = torch.linalg.cross(normal, tangent) * torch.where(t4[:, 0, 3:4] < 0, -1.0, 1.0)
        n_ts = _sample(pbr.normal, uv) * 1.0
        n_world = F.normalize(n_ts[:, 0:1] * tangent + n_ts[:, 1:2] * bitangent + n_ts[:, 2:3] * normal, dim=-1)
        n_world = torch.where(torch.isfinite(n_world), n_world, normal)
        albedo = _sample(pbr.albedo, uv).clamp(0.0, 1.0)
        roughness = _sample(pbr.roughness, uv).clamp(0.0, 1.0)
        metallic = _sample(pbr.metallic, uv).clamp(0.0, 1.0)
        occlusion = _sample(pbr.occlusion, uv).clamp(0.0, 1.0)
        light_dirs = torch.tensor([d for d, _ in LIGHTS], dtype=torch.float32)
        light_dirs = F.normalize(light_dirs, dim=-1)
        radiance = torch.tensor([[e] for _, e in LIGHTS], dtype=torch.float32)
        direct = shade(albedo, roughness, metallic, n_world, view_dir, light_dirs, radiance)
        ambient = SKY * occlusion * (albedo * (1.0 - metallic) + 0.04 + (albedo - 0.04) * metallic)
        colour[sel] = direct + ambient
    return colour.T.reshape(3, size, size)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """Linear or already-encoded `[C, H, W]` in [0, 1] -> `[H, W, 3]` uint8."""
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    array = (image.clamp(0.0, 1.0) * 255.0 + 0.5).floor().to(torch.uint8)
    return array.permute(1, 2, 0).contiguous().numpy()


def _tile(image: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(image[None].to(torch.float32), size=(size, size), mode="bilinear",
                         align_corners=False, antialias=True)[0]


def contact_sheet(scene: Scene, instances: Mapping[str, Instance], pbr: Mapping[str, PBRMaps], *,
                  resolution: int = 256, views: int = 3) -> tuple[bytes, dict[str, int]]:
    """PNG bytes of the contact sheet and a summary of its layout."""
    names = [name for name in instances if name in pbr]
    face_instance = torch.full((scene.num_faces,), -1, dtype=torch.long)
    for index, name in enumerate(names):
        face_instance[instances[name].face_mask.to(torch.bool)] = index
    maps = [dilated(pbr[name]) for name in names]
    caster = RayCaster(scene.positions, scene.faces)
    low, high = scene.positions.min(0).values, scene.positions.max(0).values
    centre = (low + high) / 2.0
    radius = float((high - low).norm() / 2.0) or 1.0
    distance = radius / math.sin(FOV_Y / 2.0) * 1.05
    renders = []
    for k in range(views):
        azimuth = 2.0 * math.pi * k / max(views, 1) + math.radians(30.0)
        elevation = math.radians(25.0)
        offset = torch.tensor([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                               math.cos(elevation) * math.cos(azimuth)]) * distance
        renders.append(linear_to_srgb(render_view(scene, caster, face_instance, maps, centre + offset, centre,
                                                  resolution)))
    tile = max(resolution // 2, 32)
    label_height = 12
    width = max(views * resolution, 4 * tile)
    height = resolution + len(names) * (tile + label_height)
    sheet = Image.new("RGB", (width, height), (40, 40, 40))
    for k, render in enumerate(renders):
        sheet.paste(Image.fromarray(_to_uint8(render)), (k * resolution, 0))
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(names):
        pbr_maps = pbr[name]
        top = resolution + row * (tile + label_height)
        draw.text((2, top), f"{name} ({pbr_maps.material}): albedo, roughness, metallic, normal",
                  fill=(230, 230, 230))
        panels = [linear_to_srgb(pbr_maps.albedo), pbr_maps.roughness, pbr_maps.metallic,
                  pbr_maps.normal * 0.5 + 0.5]
        for col, panel in enumerate(panels):
            sheet.paste(Image.fromarray(_to_uint8(_tile(panel, tile))), (col * tile, top + label_height))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue(), {"width": width, "height": height, "views": views, "instances": len(names)}
