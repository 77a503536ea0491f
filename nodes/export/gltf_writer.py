"""Write a scene and its per-instance PBR maps as one binary glTF 2.0 (.glb).

Contract (DESIGN.md §6): one node, mesh, primitive and material per
instance, all named after the instance; POSITION (with min/max), NORMAL,
TANGENT (unit xyz orthogonal to the normal, w = ±1), TEXCOORD_0 and uint
indices; baseColorTexture (sRGB PNG), an "ORM" PNG (linear: R occlusion,
G roughness, B metallic) used by both metallicRoughnessTexture and
occlusionTexture, normalTexture (tangent space, +Y up); images live in
bufferViews without `target`; every bufferView starts on a 4-byte boundary.
Fabric instances get KHR_materials_sheen when asked.

Deterministic: the same inputs give the same bytes (PIL PNGs with a fixed
compression level and no metadata, JSON in a fixed key order, no dates).
"""
from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from graphflow import UserError

from nodes.render.uv_raster import fill_atlas_gutter
from nodes.types import Instance, PBRMaps, Scene

from .tangents import finalize_tangents

PNG_COMPRESS_LEVEL = 6
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
LINEAR, LINEAR_MIPMAP_LINEAR, REPEAT = 9729, 9987, 10497


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055)


def encode_png(image: torch.Tensor) -> bytes:
    """`[C, H, W]` floats in [0, 1] (C = 1 or 3) -> 8-bit PNG bytes, deterministically."""
    array = (image.detach().to(torch.float32).clamp(0.0, 1.0) * 255.0 + 0.5).floor().to(torch.uint8)
    array_np = array.permute(1, 2, 0).contiguous().numpy()
    mode = "L" if array_np.shape[2] == 1 else "RGB"
    pil = Image.fromarray(array_np[:, :, 0] if mode == "L" else array_np, mode=mode)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def dilated(maps: PBRMaps) -> PBRMaps:
    """The maps with colour grown past the UV islands of `maps.mask` (the texture's own mask) by the one
    gutter policy, `fill_atlas_gutter` (bilinear lookups and mipmaps at island borders then see no
    black), normals renormalised."""
    mask = maps.mask.to(torch.bool)

    def grow(image: torch.Tensor) -> torch.Tensor:
        return fill_atlas_gutter(image.to(torch.float32), mask)

    normal = grow(maps.normal.to(torch.float32) / maps.normal.norm(dim=0, keepdim=True).clamp_min(1e-8))
    normal = normal / normal.norm(dim=0, keepdim=True).clamp_min(1e-8)
    flat = torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1).expand_as(normal)
    normal = torch.where(torch.isfinite(normal).all(dim=0, keepdim=True) & (normal.norm(dim=0, keepdim=True) > 0.5),
                         normal, flat)
    return PBRMaps(albedo=grow(maps.albedo), roughness=grow(maps.roughness), metallic=grow(maps.metallic),
                   normal=normal, occlusion=grow(maps.occlusion), mask=maps.mask, material=maps.material,
                   info=maps.info)


def material_images(maps: PBRMaps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sRGB base colour `[3,H,W]`, linear ORM `[3,H,W]`, encoded normal `[3,H,W]`), dilated past the islands."""
    grown = dilated(maps)
    orm = torch.cat([grown.occlusion, grown.roughness, grown.metallic], dim=0)
    return linear_to_srgb(grown.albedo), orm.clamp(0.0, 1.0), grown.normal * 0.5 + 0.5


@dataclass(frozen=True)
class MaterialPngs:
    """One instance's three PNGs, shared byte for byte by the glTF, USD and MaterialX exports (so every
    client sees the same pixels): sRGB base colour; linear ORM (R occlusion, G roughness, B metallic);
    tangent-space normal (+Y up, OpenGL convention) encoded as n * 0.5 + 0.5."""

    base_color: bytes
    orm: bytes
    normal: bytes
    # The relief (PBRMaps.height) where the maps have one, for the formats that take displacement (USD,
    # MaterialX; glTF has no displacement): grey in [0, 1], metres = height_offset + grey * height_scale.
    height: bytes | None = None
    height_scale: float = 0.0
    height_offset: float = 0.0


def height_png(maps: PBRMaps) -> tuple[bytes | None, float, float]:
    """(grey PNG, scale, offset) of the maps' height, gutter filled; (None, 0, 0) without one."""
    mask = maps.mask.to(torch.bool)
    if maps.height is None or not bool(mask.any()):
        return None, 0.0, 0.0
    height = fill_atlas_gutter(maps.height.to(torch.float32), mask)
    low, high = float(height[:, mask].min()), float(height[:, mask].max())
    scale = max(high - low, 1e-9)
    return encode_png((height - low) / scale), round(scale, 9), round(low, 9)


def material_pngs(maps: PBRMaps) -> MaterialPngs:
    """The PNG bytes of `material_images(maps)` (and of the height, where the maps have one)."""
    base_colour, orm, normal = material_images(maps)
    height, scale, offset = height_png(maps)
    return MaterialPngs(base_color=encode_png(base_colour), orm=encode_png(orm), normal=encode_png(normal),
                        height=height, height_scale=scale, height_offset=offset)


def sheen_colour(maps: PBRMaps) -> list[float]:
    """Sheen colour of a fabric: the mean albedo brightened, same hue (a velvet rim), 6 decimals."""
    mean_albedo = maps.albedo[:, maps.mask.to(torch.bool)].mean(dim=1) if bool(maps.mask.any()) \
        else torch.full((3,), 0.5)
    return [round(float(c), 6) for c in (mean_albedo.clamp(0.0, 1.0) ** 0.5).tolist()]


class _BinaryBuilder:
    """The BIN chunk: appends 4-byte-aligned bufferViews and accessors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.buffer_views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None) -> int:
        pad = (-self.length) % 4
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.length += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.chunks.append(data)
        self.length += len(data)
        self.buffer_views.append(view)
        return len(self.buffer_views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, with_bounds: bool = False) -> int:
        if array.dtype == np.float32:
            component = FLOAT
        elif array.dtype == np.uint16:
            component = UNSIGNED_SHORT
        else:
            component = UNSIGNED_INT
        view = self.view(np.ascontiguousarray(array).tobytes(), target)
        accessor: dict[str, Any] = {"bufferView": view, "componentType": component,
                                    "count": int(array.shape[0]), "type": kind}
        if with_bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor["min"] = [float(x) for x in flat.min(axis=0)]
            accessor["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        data = b"".join(self.chunks)
        return data + b"\x00" * ((-len(data)) % 4)


def _unit(v: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    v64 = v.to(torch.float64)
    norm = v64.norm(dim=-1, keepdim=True)
    good = torch.isfinite(v64).all(dim=-1, keepdim=True) & (norm > 1e-12)
    return torch.where(good, v64 / norm.clamp_min(1e-12), fallback.to(torch.float64))


def _face_normals_per_vertex(positions: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    p = positions.to(torch.float64)
    n = torch.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]], dim=-1)
    acc = torch.zeros_like(p)
    for i in range(3):
        acc.index_add_(0, faces[:, i], n)
    return _unit(acc, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(acc))


def instance_primitive(scene: Scene, instance: Instance) -> dict[str, np.ndarray]:
    """The instance's own vertex arrays (re-indexed) in glTF layouts."""
    faces = scene.faces[instance.face_mask.to(torch.bool)]
    used, local = torch.unique(faces.flatten(), return_inverse=True)
    local_faces = local.reshape(-1, 3)
    positions = scene.positions[used].to(torch.float32)
    fallback_normals = _face_normals_per_vertex(positions, local_faces)
    normals = _unit(scene.normals[used], fallback_normals)
    tangent_in = scene.tangents[used].to(torch.float64)
    tangents = finalize_tangents(normals, tangent_in[:, :3])
    tangents[:, 3] = torch.where(tangent_in[:, 3] < 0, -1.0, 1.0).to(torch.float32)
    uvs = scene.uvs[used].to(torch.float32)
    uvs = torch.where(torch.isfinite(uvs), uvs, torch.zeros_like(uvs))
    index_dtype = np.uint16 if used.numel() < 65535 else np.uint32
    return {
        "POSITION": positions.numpy().astype(np.float32),
        "NORMAL": normals.to(torch.float32).numpy(),
        "TANGENT": tangents.numpy().astype(np.float32),
        "TEXCOORD_0": uvs.numpy().astype(np.float32),
        "indices": local_faces.numpy().astype(index_dtype).reshape(-1),
    }


@dataclass
class _GltfDocument:
    """The glTF JSON arrays being filled, one entry per exported instance, over one binary buffer."""

    builder: _BinaryBuilder = field(default_factory=_BinaryBuilder)
    images: list[dict[str, Any]] = field(default_factory=list)
    textures: list[dict[str, Any]] = field(default_factory=list)
    materials: list[dict[str, Any]] = field(default_factory=list)
    meshes: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    triangles: int = 0

    def add_texture(self, png: bytes, label: str) -> int:
        view = self.builder.view(png, None)
        self.images.append({"bufferView": view, "mimeType": "image/png", "name": label})
        self.textures.append({"sampler": 0, "source": len(self.images) - 1, "name": label})
        return len(self.textures) - 1

    def add_material(self, inst_name: str, maps: PBRMaps, sheen_for_fabric: bool) -> None:
        pngs = material_pngs(maps)
        base_tex = self.add_texture(pngs.base_color, f"{inst_name}_baseColor")
        orm_tex = self.add_texture(pngs.orm, f"{inst_name}_occlusionRoughnessMetallic")
        normal_tex = self.add_texture(pngs.normal, f"{inst_name}_normal")
        material: dict[str, Any] = {
            "name": inst_name,
            "pbrMetallicRoughness": {
                "baseColorTexture": {"index": base_tex},
                "metallicRoughnessTexture": {"index": orm_tex},
                "metallicFactor": 1.0,
                "roughnessFactor": 1.0,
            },
            "normalTexture": {"index": normal_tex},
            "occlusionTexture": {"index": orm_tex},
        }
        if sheen_for_fabric and maps.material == "fabric":
            material["extensions"] = {"KHR_materials_sheen": {
                "sheenColorFactor": sheen_colour(maps),
                "sheenRoughnessFactor": 0.5,
            }}
        self.materials.append(material)

    def add_mesh(self, inst_name: str, arrays: dict[str, np.ndarray]) -> None:
        """The instance's mesh (with the last added material) and its node."""
        builder = self.builder
        attributes = {
            "POSITION": builder.accessor(arrays["POSITION"], "VEC3", ARRAY_BUFFER, with_bounds=True),
            "NORMAL": builder.accessor(arrays["NORMAL"], "VEC3", ARRAY_BUFFER),
            "TANGENT": builder.accessor(arrays["TANGENT"], "VEC4", ARRAY_BUFFER),
            "TEXCOORD_0": builder.accessor(arrays["TEXCOORD_0"], "VEC2", ARRAY_BUFFER),
        }
        indices = builder.accessor(arrays["indices"], "SCALAR", ELEMENT_ARRAY_BUFFER)
        self.triangles += int(arrays["indices"].shape[0] // 3)
        self.meshes.append({"name": inst_name, "primitives": [
            {"attributes": attributes, "indices": indices, "material": len(self.materials) - 1, "mode": 4}]})
        self.nodes.append({"name": inst_name, "mesh": len(self.meshes) - 1})

    def document(self, name: str, blob: bytes) -> dict[str, Any]:
        """The JSON chunk, for the binary chunk `blob`."""
        document: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "graphflow export.gltf"},
            "scene": 0,
            "scenes": [{"name": name, "nodes": list(range(len(self.nodes)))}],
            "nodes": self.nodes,
            "meshes": self.meshes,
            "materials": self.materials,
            "textures": self.textures,
            "images": self.images,
            "samplers": [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT, "wrapT": REPEAT}],
            "accessors": self.builder.accessors,
            "bufferViews": self.builder.buffer_views,
            "buffers": [{"byteLength": len(blob)}],
        }
        if any("extensions" in m for m in self.materials):
            document["extensionsUsed"] = ["KHR_materials_sheen"]
        return document


def build_glb(scene: Scene, instances: Mapping[str, Instance], pbr: Mapping[str, PBRMaps], *,
              sheen_for_fabric: bool = True, name: str = "graphflow") -> tuple[bytes, dict[str, Any]]:
    """The .glb bytes and a summary (instances, triangles, materials, byte size)."""
    missing = [key for key in instances if key not in pbr]
    if missing:
        raise UserError(f"no PBR maps for instance(s) {', '.join(missing)}", param="pbr",
                        hint="connect the brdf.decompose output made for the same instances")
    if scene.faces.shape[0] == 0:
        raise UserError("the scene has no triangles to export", param="scene")
    gltf = _GltfDocument()
    for inst_name, instance in instances.items():
        if int(instance.face_mask.sum()) == 0:
            continue
        gltf.add_material(inst_name, pbr[inst_name], sheen_for_fabric)
        gltf.add_mesh(inst_name, instance_primitive(scene, instance))

    blob = gltf.builder.blob()
    glb = pack_glb(gltf.document(name, blob), blob)
    materials = gltf.materials
    summary = {
        "name": name,
        "instances": len(gltf.nodes),
        "triangles": gltf.triangles,
        "materials": [m["name"] for m in materials],
        "sheen": [m["name"] for m in materials if "extensions" in m],
        "bytes": len(glb),
    }
    return glb, summary


def pack_glb(document: dict[str, Any], blob: bytes) -> bytes:
    """The GLB container: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    json_bytes = json.dumps(document, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    json_bytes += b" " * ((-len(json_bytes)) % 4)
    blob += b"\x00" * ((-len(blob)) % 4)
    total = 12 + 8 + len(json_bytes) + 8 + len(blob)
    return b"".join([
        struct.pack("<4sII", b"glTF", 2, total),
        struct.pack("<I4s", len(json_bytes), b"JSON"), json_bytes,
        struct.pack("<I4s", len(blob), b"BIN\x00"), blob,
    ])
