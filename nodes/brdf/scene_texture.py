"""A scene's own baseColor textures resampled onto each instance's atlas.

`pbr_from_textured` starts from an asset whose baseColor holds baked
lighting. The loader keeps each part's baseColor (`Scene.part_textures`,
linear RGB, already multiplied by baseColorFactor) in the texture space of
the file's TEXCOORD_0 (`Scene.source_uvs`), and may have re-unwrapped the
part (`Scene.uvs`). Every texel of the instance's atlas looks up its surface
point's source UV, through the part's KHR_texture_transform, with bilinear
REPEAT sampling (glTF's default sampler).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F

from nodes.render.uv_raster import fill_atlas_gutter
from nodes.scene.loader import require_part_textures
from nodes.types import Instance, Scene, TextureMap

from .texels import texel_geometry

FALLBACK_GREY = 0.5


def apply_texture_transform(uv: torch.Tensor, transform: dict[str, Any] | None) -> torch.Tensor:
    """KHR_texture_transform: `uv' = T(offset) R(rotation) S(scale) uv` (GLSL column-major matrices)."""
    if not transform:
        return uv
    offset = transform.get("offset", [0.0, 0.0])
    rotation = float(transform.get("rotation", 0.0))
    scale = transform.get("scale", [1.0, 1.0])
    c, s = math.cos(rotation), math.sin(rotation)
    u, v = uv[:, 0] * float(scale[0]), uv[:, 1] * float(scale[1])
    return torch.stack([c * u - s * v + float(offset[0]), s * u + c * v + float(offset[1])], dim=1)


def sample_repeat(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear REPEAT lookup of `[C, H, W]` at glTF uvs `[N, 2]` -> `[N, C]`."""
    wrapped = uv - torch.floor(uv)
    grid = (wrapped * 2.0 - 1.0).to(image.dtype)[None, None]
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def texture_from_scene(scene: Scene, instance: Instance, size: int,
                       log: logging.Logger | None = None) -> TextureMap:
    log = log or logging.getLogger("graphflow.nodes.brdf")
    geometry = texel_geometry(scene, instance.face_mask, (size, size))
    count = geometry.index.numel()
    colours = torch.full((count, 3), FALLBACK_GREY)
    source_uvs = scene.source_uvs if scene.source_uvs is not None else scene.uvs
    verts = scene.faces[geometry.face]
    uv = (source_uvs[verts] * geometry.barycentric[..., None]).sum(1)
    parts = scene.face_part[geometry.face]
    require_part_textures(scene, torch.unique(scene.face_part[instance.face_mask]).tolist())  # issue 23
    untextured: list[str] = []
    for part in torch.unique(parts).tolist():
        texels = parts == part
        info = scene.part_info[part] if part < len(scene.part_info) else {}
        texture = scene.part_textures[part] if part < len(scene.part_textures) else None
        part_uv = uv[texels]
        if texture is not None and bool(torch.isfinite(part_uv).all()):
            transformed = apply_texture_transform(part_uv, info.get("base_color_uv_transform"))
            colours[texels] = sample_repeat(texture[:3].to(torch.float32), transformed)
        else:
            factor = info.get("base_color_factor", [FALLBACK_GREY] * 3)
            colours[texels] = torch.tensor([float(x) for x in factor[:3]])
            untextured.append(scene.part_names[part])
    if untextured:
        log.info("texture.from_scene: %s: parts without a baseColor texture use their factor: %s",
                 instance.name, ", ".join(untextured))
    image = torch.zeros(3, size * size)
    image[:, geometry.index] = colours.T
    image = fill_atlas_gutter(image.reshape(3, size, size), geometry.mask)
    return TextureMap(image=image.contiguous(), mask=geometry.mask.clone(),
                      info={"source": "scene baseColor", "untextured_parts": untextured})
