"""Small glTF/glb writers for tests: real files built from numpy arrays."""
from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prim:
    positions: np.ndarray
    indices: np.ndarray | None = None
    uvs: np.ndarray | None = None
    normals: np.ndarray | None = None
    mode: int | None = None
    material: str | None = None


@dataclass
class GltfDoc:
    meshes: list[list[Prim]]
    nodes: list[dict[str, Any]]  # glTF node dicts; "mesh" indexes `meshes`
    roots: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[dict[str, Any], bytes]:
        """(glTF JSON without buffer uri, binary buffer)."""
        blob = bytearray()
        accessors: list[dict[str, Any]] = []
        views: list[dict[str, Any]] = []

        def add(array: np.ndarray, component: int, atype: str, target: int | None) -> int:
            while len(blob) % 4:
                blob.append(0)
            data = np.ascontiguousarray(array).tobytes()
            view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
            if target:
                view["target"] = target
            views.append(view)
            blob.extend(data)
            count = array.shape[0]
            acc: dict[str, Any] = {"bufferView": len(views) - 1, "componentType": component, "count": count,
                                   "type": atype}
            if atype == "VEC3" and component == 5126:
                acc["min"] = array.min(axis=0).tolist()
                acc["max"] = array.max(axis=0).tolist()
            accessors.append(acc)
            return len(accessors) - 1

        materials: list[dict[str, Any]] = []
        meshes = []
        for m, prims in enumerate(self.meshes):
            out = []
            for prim in prims:
                attrs = {"POSITION": add(prim.positions.astype(np.float32), 5126, "VEC3", 34962)}
                if prim.normals is not None:
                    attrs["NORMAL"] = add(prim.normals.astype(np.float32), 5126, "VEC3", 34962)
                if prim.uvs is not None:
                    attrs["TEXCOORD_0"] = add(prim.uvs.astype(np.float32), 5126, "VEC2", 34962)
                p: dict[str, Any] = {"attributes": attrs}
                if prim.indices is not None:
                    p["indices"] = add(prim.indices.astype(np.uint32), 5125, "SCALAR", 34963)
                if prim.mode is not None:
                    p["mode"] = prim.mode
                if prim.material is not None:
                    materials.append({"name": prim.material})
                    p["material"] = len(materials) - 1
                out.append(p)
            meshes.append({"name": f"mesh{m}", "primitives": out})
        doc: dict[str, Any] = {
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": self.roots if self.roots is not None else list(range(len(self.nodes)))}],
            "nodes": self.nodes,
            "meshes": meshes,
            "accessors": accessors,
            "bufferViews": views,
            "buffers": [{"byteLength": len(blob)}],
        }
        if materials:
            doc["materials"] = materials
        doc.update(self.extra)
        return doc, bytes(blob)

    def glb(self) -> bytes:
        doc, blob = self.build()
        return pack_glb(doc, blob)

    def gltf_data_uri(self) -> bytes:
        doc, blob = self.build()
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        return json.dumps(doc).encode()


def pack_glb(doc: dict[str, Any], blob: bytes) -> bytes:
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def quad(size: float = 1.0) -> Prim:
    """A unit square in the XY plane facing +Z, with UVs covering [0, 1]²."""
    s = size
    positions = np.array([[0, 0, 0], [s, 0, 0], [s, s, 0], [0, s, 0]], dtype=np.float32)
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    return Prim(positions, np.array([0, 1, 2, 0, 2, 3]), uvs=uvs)


def cube_prim(material: str | None = None) -> Prim:
    """A unit cube (shared corners, no UVs/normals) centred at the origin."""
    p = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Prim(p, f.reshape(-1), material=material)
