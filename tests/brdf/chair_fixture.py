"""SheenChair as a `Scene` on its unique atlas (TEXCOORD_1) with ground-truth PBR maps.

SheenChair's TEXCOORD_0 tiles its textures (KHR_texture_transform, scale up to
7): no texel of a TEXCOORD_0 texture belongs to one point of the surface, so
lighting cannot be baked into it. TEXCOORD_1 is a unique atlas (the one its
occlusion map uses), as on a scanned or lightmapped asset: the scene built
here uses it as `uvs`, and the ground truth per atlas texel is sampled from
the asset's own textures through TEXCOORD_0 and the texture transforms,
mip-filtered to the texel's footprint as a bake does (the fabric's normal map
repeats so often that a point sample per texel would be aliased noise: at a
256² atlas one texel spans ~25 normal-map texels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib
import torch
import torch.nn.functional as F
from PIL import Image

from nodes.brdf.texels import TexelGeometry, texel_geometry
from nodes.export.tangents import vertex_tangents
from nodes.types import Instance, Keyed, Scene

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"
PART_CLASSES = {"SheenChair_fabric": "fabric", "SheenChair_wood": "wood", "SheenChair_metal": "metal",
                "SheenChair_label": "paper"}


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _quat_matrix(q: list[float]) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass
class ChairData:
    scene: Scene
    instances: Keyed[Instance]
    uv0: torch.Tensor  # [V, 2]
    tangents0: torch.Tensor  # [V, 4] tangents of TEXCOORD_0 (for the fabric normal map)
    gltf: pygltflib.GLTF2


def load_chair() -> ChairData:
    gltf = pygltflib.GLTF2().load(str(CHAIR))
    blob = (CHAIR.parent / gltf.buffers[0].uri).read_bytes()

    def accessor(i: int) -> np.ndarray:
        acc = gltf.accessors[i]
        view = gltf.bufferViews[acc.bufferView]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}[acc.componentType]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)

    pos, nrm, uv0, uv1, faces, face_part, names, info = [], [], [], [], [], [], [], []
    offset = 0
    for node in gltf.nodes:
        mesh = gltf.meshes[node.mesh]
        rot = _quat_matrix(node.rotation) if node.rotation else np.eye(3)
        trans = np.array(node.translation or [0.0, 0.0, 0.0])
        for prim in mesh.primitives:
            p = accessor(prim.attributes.POSITION).astype(np.float64) @ rot.T + trans
            n = accessor(prim.attributes.NORMAL).astype(np.float64) @ rot.T
            idx = accessor(prim.indices).astype(np.int64).reshape(-1, 3) + offset
            part = len(names)
            names.append(node.name)
            info.append({"node": node.name, "mesh": mesh.name, "primitive": 0,
                         "material": gltf.materials[prim.material].name, "material_index": prim.material})
            pos.append(p), nrm.append(n), faces.append(idx)
            uv0.append(accessor(prim.attributes.TEXCOORD_0)), uv1.append(accessor(prim.attributes.TEXCOORD_1))
            face_part.append(np.full(idx.shape[0], part))
            offset += p.shape[0]
    positions = torch.tensor(np.concatenate(pos), dtype=torch.float32)
    normals = torch.nn.functional.normalize(torch.tensor(np.concatenate(nrm), dtype=torch.float32), dim=-1)
    faces_t = torch.tensor(np.concatenate(faces))
    uv0_t = torch.tensor(np.concatenate(uv0), dtype=torch.float32)
    uv1_t = torch.tensor(np.concatenate(uv1), dtype=torch.float32)
    scene = Scene(
        positions=positions, faces=faces_t, normals=normals, uvs=uv1_t,
        tangents=vertex_tangents(positions, faces_t, normals, uv1_t),
        face_part=torch.tensor(np.concatenate(face_part)), part_names=tuple(names), part_info=tuple(info),
        source=str(CHAIR),
    )
    instances = {}
    for part, name in enumerate(names):
        mask = scene.face_part == part
        verts = scene.faces[mask].flatten()
        bbox = torch.stack([positions[verts].min(0).values, positions[verts].max(0).values])
        instances[name] = Instance(name=name, face_mask=mask, bbox=bbox, material=PART_CLASSES[name])
    return ChairData(scene, Keyed(instances), uv0_t, vertex_tangents(positions, faces_t, normals, uv0_t), gltf)


def _load_image(gltf: pygltflib.GLTF2, texture_index: int) -> torch.Tensor:
    uri = gltf.images[gltf.textures[texture_index].source].uri
    img = np.asarray(Image.open(CHAIR.parent / uri).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def _texture_scale(tex_info: object) -> torch.Tensor:
    ext = (getattr(tex_info, "extensions", None) or {}).get("KHR_texture_transform", {})
    return torch.tensor(ext.get("scale", [1.0, 1.0]), dtype=torch.float32)


def _transform_uv(uv: torch.Tensor, tex_info: object) -> torch.Tensor:
    ext = (getattr(tex_info, "extensions", None) or {}).get("KHR_texture_transform", {})
    offset = ext.get("offset", [0.0, 0.0])
    rotation = ext.get("rotation", 0.0)
    scale = ext.get("scale", [1.0, 1.0])
    c, s = math.cos(rotation), math.sin(rotation)
    u, v = uv[:, 0] * scale[0], uv[:, 1] * scale[1]
    # KHR_texture_transform GLSL: mat3(cos, sin, 0, -sin, cos, 0, ...) is column-major.
    return torch.stack([c * u - s * v + offset[0], s * u + c * v + offset[1]], dim=1)


def _uv0_per_atlas_uv(chair: ChairData) -> torch.Tensor:
    """`[F, 2, 2]`: per face, d(TEXCOORD_0)/d(atlas uv) (both are affine over a triangle)."""
    faces = chair.scene.faces
    uv0, uv1 = chair.uv0[faces], chair.scene.uvs[faces]
    d0 = torch.stack([uv0[:, 1] - uv0[:, 0], uv0[:, 2] - uv0[:, 0]], dim=-1)
    d1 = torch.stack([uv1[:, 1] - uv1[:, 0], uv1[:, 2] - uv1[:, 0]], dim=-1)
    ok = torch.linalg.det(d1).abs() > 1e-12
    inverse = torch.zeros_like(d1)
    inverse[ok] = torch.linalg.inv(d1[ok])
    return d0 @ inverse


def _sample(image: torch.Tensor, uv: torch.Tensor, lod: torch.Tensor) -> torch.Tensor:
    """Trilinear (mip-mapped) REPEAT sampling of `[C, H, W]` at glTF uvs `[N, 2]` and levels `[N]` -> `[N, C]`.

    A bake writes into each atlas texel the average over the texel's footprint on the surface; point
    samples of a texture much finer than the atlas would be aliased noise, not that average.
    """
    levels = [image]
    while min(levels[-1].shape[-2:]) > 1:
        levels.append(F.avg_pool2d(levels[-1][None], 2)[0])
    lod = lod.clamp(0, len(levels) - 1)
    low = lod.floor().long()
    frac = (lod - low)[:, None]
    wrapped = uv - torch.floor(uv)
    grid = (wrapped * 2.0 - 1.0)[None, None]  # x = u, y = v (row 0 at the top)
    out = torch.zeros(uv.shape[0], image.shape[0])
    for level, level_image in enumerate(levels):
        weight = torch.where(low[:, None] == level, 1 - frac, 0.0) + torch.where(low[:, None] + 1 == level, frac, 0.0)
        if bool((weight > 0).any()):
            sampled = F.grid_sample(level_image[None], grid, mode="bilinear", padding_mode="border",
                                    align_corners=False)[0, :, 0].T
            out = out + weight * sampled
    return out


def _footprint_lod(jacobian: torch.Tensor, tex_info: object, image: torch.Tensor, atlas_size: int) -> torch.Tensor:
    """Mip level `[N]` whose texels match one atlas texel's footprint in `image` (the larger axis)."""
    scaled = jacobian * _texture_scale(tex_info)[None, :, None] / atlas_size  # [N, 2 (uv0), 2 (atlas axis)]
    texels = torch.tensor([image.shape[-1], image.shape[-2]], dtype=torch.float32)[None, :, None]
    footprint = (scaled * texels).norm(dim=1).max(dim=1).values
    return torch.log2(footprint.clamp_min(1e-6))


@dataclass
class GroundTruth:
    albedo: torch.Tensor  # [N, 3] linear
    roughness: torch.Tensor  # [N, 1]
    metallic: torch.Tensor  # [N, 1]
    normal_world: torch.Tensor  # [N, 3] detail normal in world space


def ground_truth(chair: ChairData, geometry: TexelGeometry) -> GroundTruth:
    """The chair's own material at the texels of `geometry` (one instance), filtered to the texel footprints."""
    gltf = chair.gltf
    verts = chair.scene.faces[geometry.face]
    bary = geometry.barycentric[..., None]
    uv0 = (chair.uv0[verts] * bary).sum(1)
    jacobian = _uv0_per_atlas_uv(chair)[geometry.face]
    atlas_size = geometry.size[1]
    part = int(chair.scene.face_part[geometry.face[0]])
    material = gltf.materials[chair.scene.part_info[part]["material_index"]]
    pbr = material.pbrMetallicRoughness
    count = uv0.shape[0]

    def sample(tex_info: object, image: torch.Tensor) -> torch.Tensor:
        return _sample(image, _transform_uv(uv0, tex_info), _footprint_lod(jacobian, tex_info, image, atlas_size))

    albedo = torch.tensor(pbr.baseColorFactor[:3]).expand(count, 3).clone()
    if pbr.baseColorTexture is not None:
        albedo = albedo * sample(pbr.baseColorTexture, srgb_to_linear(_load_image(gltf, pbr.baseColorTexture.index)))
    roughness = torch.full((count, 1), float(pbr.roughnessFactor if pbr.roughnessFactor is not None else 1.0))
    metallic = torch.full((count, 1), float(pbr.metallicFactor if pbr.metallicFactor is not None else 1.0))
    if pbr.metallicRoughnessTexture is not None:
        mr = sample(pbr.metallicRoughnessTexture, _load_image(gltf, pbr.metallicRoughnessTexture.index))
        roughness, metallic = roughness * mr[:, 1:2], metallic * mr[:, 2:3]
    normal = geometry.normal
    if material.normalTexture is not None:
        nt = sample(material.normalTexture, _load_image(gltf, material.normalTexture.index) * 2.0 - 1.0)
        scale = material.normalTexture.scale or 1.0
        nt = torch.nn.functional.normalize(nt * torch.tensor([scale, scale, 1.0]), dim=-1)
        t4 = chair.tangents0[verts]
        t = torch.nn.functional.normalize((t4[..., :3] * bary).sum(1), dim=-1)
        t = torch.nn.functional.normalize(t - (t * normal).sum(-1, keepdim=True) * normal, dim=-1)
        b = torch.cross(normal, t, dim=-1) * t4[:, 0, 3:4]
        normal = torch.nn.functional.normalize(nt[:, 0:1] * t + nt[:, 1:2] * b + nt[:, 2:3] * normal, dim=-1)
    return GroundTruth(albedo.float(), roughness.float(), metallic.float(), normal.float())


def instance_geometry(chair: ChairData, name: str, size: int) -> TexelGeometry:
    return texel_geometry(chair.scene, chair.instances[name].face_mask, (size, size))
