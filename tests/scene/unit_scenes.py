"""Scenes written in other units and with unreadable textures, for the issue 23 tests (real glb/gltf files)."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from scene_builders import GltfDoc, Prim, pack_glb

from nodes.scene.demo_room import build_room_scene

UNITS_PER_METRE = {"m": 1.0, "cm": 100.0, "mm": 1000.0, "in": 1 / 0.0254, "ft": 1 / 0.3048}


def demo_room_glb(path: Path, unit: str) -> Path:
    """The demo room as a glb in `unit`: one node per part, its translation the part's centre and its mesh
    the part's vertices around it, both scaled to the unit (UVs and normals as the room has them)."""
    scene = build_room_scene()
    k = UNITS_PER_METRE[unit]
    meshes, nodes = [], []
    for index, name in enumerate(scene.part_names):
        faces = scene.faces[scene.face_part == index].numpy()
        used, local = np.unique(faces, return_inverse=True)
        positions = scene.positions[used].numpy().astype(np.float64)
        centre = (positions.min(axis=0) + positions.max(axis=0)) / 2
        prim = Prim((positions - centre) * k, local.reshape(-1), uvs=scene.uvs[used].numpy(),
                    normals=scene.normals[used].numpy(), material=scene.part_info[index]["material"])
        meshes.append([prim])
        nodes.append({"name": name, "mesh": index, "translation": (centre * k).tolist()})
    path.write_bytes(GltfDoc(meshes, nodes).glb())
    return path


def textured_quad(folder: Path, image: dict[str, Any], image_bytes: bytes | None, *, glb: bool = True) -> Path:
    """A 1 m quad whose material's baseColorTexture is `image` (a glTF image object). With `glb` and
    `image_bytes` the image is embedded through a bufferView; otherwise `image` names its uri."""
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    doc, blob = GltfDoc([[Prim(positions, np.array([0, 1, 2, 0, 2, 3]), uvs=uvs, material="painted")]],
                        [{"name": "poster", "mesh": 0}]).build()
    doc["materials"][0]["pbrMetallicRoughness"] = {"baseColorTexture": {"index": 0}}
    doc["textures"] = [{"source": 0}]
    image = dict(image)
    if image_bytes is not None:
        padding = b"\0" * (-len(blob) % 4)
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob) + len(padding), "byteLength": len(image_bytes)})
        image["bufferView"] = len(doc["bufferViews"]) - 1
        blob = blob + padding + image_bytes
        doc["buffers"][0]["byteLength"] = len(blob)
    doc["images"] = [image]
    folder.mkdir(parents=True, exist_ok=True)
    if glb:
        path = folder / "poster.glb"
        path.write_bytes(pack_glb(doc, blob))
        return path
    (folder / "poster.bin").write_bytes(blob)
    doc["buffers"][0]["uri"] = "poster.bin"
    path = folder / "poster.gltf"
    path.write_text(json.dumps(doc))
    return path


# The first bytes of a KTX2 file (its identifier) and then garbage: what a KHR_texture_basisu image looks
# like to a reader that cannot decode KTX2.
KTX2_BYTES = bytes([0xAB, 0x4B, 0x54, 0x58, 0x20, 0x32, 0x30, 0xBB, 0x0D, 0x0A, 0x1A, 0x0A]) + struct.pack("<16I",
                                                                                                        *range(16))


def skeletons_glb(path: Path, copies: int = 84, height: float = 90.0) -> Path:
    """RecursiveSkeletons-like: one 76-triangle mesh (a 19-segment tube: 38 side, 38 cap triangles, each
    segment `height` / 10 long, UVs wrapped once) used by `copies` nodes stacked in a column `height` units
    tall, authored in centimetres but written without saying so (read as metres)."""
    segments, length, radius = 19, height / 10, height / 60
    angle = np.linspace(0, 2 * np.pi, segments + 1)
    ring = np.stack([np.cos(angle) * radius, np.sin(angle) * radius], -1)
    bottom = np.c_[ring[:, 0], np.zeros(segments + 1), ring[:, 1]]
    top = np.c_[ring[:, 0], np.full(segments + 1, length), ring[:, 1]]
    centres = np.array([[0, 0, 0], [0, length, 0]])
    positions = np.concatenate([bottom, top, bottom, top, centres]).astype(np.float32)
    around = angle / (2 * np.pi) * 0.98 + 0.01
    circle = np.c_[np.cos(angle), np.sin(angle)] * 0.2
    uvs = np.concatenate([np.c_[around, np.full(segments + 1, 0.45)], np.c_[around, np.full(segments + 1, 0.01)],
                          circle + [0.25, 0.75], circle + [0.75, 0.75], [[0.25, 0.75], [0.75, 0.75]]])
    k = np.arange(segments)
    n = segments + 1
    side = np.concatenate([np.stack([k, k + n, k + 1], 1), np.stack([k + 1, k + n, k + n + 1], 1)])
    caps = np.concatenate([np.stack([np.full(segments, 4 * n), 2 * n + k + 1, 2 * n + k], 1),
                           np.stack([np.full(segments, 4 * n + 1), 3 * n + k, 3 * n + k + 1], 1)])
    faces = np.concatenate([side, caps])
    assert len(faces) == 76
    step = (height - length) / max((copies - 1) // 4, 1)  # the column is `height` tall whatever `copies` is
    nodes = [{"name": f"bone_{i}", "mesh": 0, "translation": [float(i % 4) * radius * 3, float(i // 4) * step, 0.0]}
             for i in range(copies)]
    path.write_bytes(GltfDoc([[Prim(positions, faces.reshape(-1), uvs=uvs.astype(np.float32))]], nodes).glb())
    return path


def tiny_spheres_glb(path: Path, radius: float = 0.00035, copies: int = 3) -> Path:
    """MetalRoughSpheresNoTextures-like: spheres of radius 0.35 mm a millimetre apart, whose planar UVs
    overlap (the two hemispheres), so the loader unwraps them with xatlas."""
    rings, segments = 12, 16
    theta, phi = np.meshgrid(np.linspace(0, np.pi, rings + 1), np.linspace(0, 2 * np.pi, segments + 1), indexing="ij")
    unit = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    grid = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    sphere = Prim(unit * radius, faces.reshape(-1), uvs=unit[:, [0, 2]] * 0.5 + 0.5, normals=unit)
    nodes = [{"name": f"sphere_{i}", "mesh": 0, "translation": [0.001 * i, 0.0, 0.0]} for i in range(copies)]
    path.write_bytes(GltfDoc([[sphere]], nodes).glb())
    return path
