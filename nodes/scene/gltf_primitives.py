"""One glTF mesh primitive's vertex data, in object space: accessors (integer attributes under
KHR_mesh_quantization) or a KHR_draco_mesh_compression stream, triangle lists from strips and fans."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphflow import UserError

from . import gltf_ext
from .gltf_ext import DRACO, QUANTIZATION
from .gltf_reader import GltfReader
from .gltf_schema import NORMALIZED_SCALE, is_int



def _triangles(indices: np.ndarray, mode: int) -> np.ndarray:
    """Index list of a primitive -> [F, 3] triangle list (strips and fans converted, winding kept)."""
    if mode == 4:
        usable = len(indices) - len(indices) % 3
        return indices[:usable].reshape(-1, 3)
    if len(indices) < 3:
        return np.zeros((0, 3), dtype=np.int64)
    k = np.arange(len(indices) - 2)
    if mode == 5:  # strip: odd triangles swap their first two vertices to keep the winding
        a = np.where(k % 2 == 0, indices[k], indices[k + 1])
        b = np.where(k % 2 == 0, indices[k + 1], indices[k])
        return np.stack([a, b, indices[k + 2]], axis=1)
    return np.stack([np.full_like(k, indices[0]), indices[k + 1], indices[k + 2]], axis=1)  # fan


@dataclass
class PrimitiveArrays:
    """A primitive's vertex data as read from the file (object space)."""

    positions: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    tangents: np.ndarray | None
    uvs: np.ndarray | None  # TEXCOORD_0
    texture_uvs: np.ndarray | None  # TEXCOORD_<n> of the baseColor when n != 0


def _attribute_components(reader: GltfReader) -> dict[str, tuple[int, ...]]:
    """Allowed componentTypes per attribute; KHR_mesh_quantization widens them to integers."""
    if QUANTIZATION in reader.extensions:
        return {"POSITION": (5126, 5120, 5121, 5122, 5123), "NORMAL": (5126, 5120, 5122),
                "TANGENT": (5126, 5120, 5122), "TEXCOORD": (5126, 5120, 5121, 5122, 5123)}
    return {"POSITION": (5126,), "NORMAL": (5126,), "TANGENT": (5126,), "TEXCOORD": (5126, 5121, 5123)}


def primitive_arrays(reader: GltfReader, prim: Any, raw_attrs: dict[str, Any], label: str, max_faces: int,
                      texcoord: int) -> PrimitiveArrays:
    """Positions, triangles and the optional attributes of one primitive (Draco-decoded when compressed).
    `raw_attrs`: the primitive's `attributes` as written in the JSON (name -> accessor index)."""
    if not raw_attrs:
        raise reader.fail(f"{label} has no attributes")
    extensions = prim.extensions if isinstance(prim.extensions, dict) else {}
    if isinstance(extensions.get(DRACO), dict) and DRACO in reader.extensions and gltf_ext.draco_available():
        return _draco_arrays(reader, prim, extensions[DRACO], raw_attrs, label, max_faces, texcoord)
    max_vertices = 3 * max_faces + 3
    components = _attribute_components(reader)
    if raw_attrs.get("POSITION") is None:
        raise reader.fail(f"{label} has no POSITION attribute")
    positions = reader.accessor(raw_attrs["POSITION"], f"{label} POSITION", types=("VEC3",),
                                components=components["POSITION"], max_count=max_vertices)
    num_vertices = len(positions)

    def optional(name: str, atype: str, kind: str) -> np.ndarray | None:
        index = raw_attrs.get(name)
        if index is None:
            return None
        values = reader.accessor(index, f"{label} {name}", types=(atype,), components=components[kind],
                                 max_count=max_vertices)
        if len(values) != num_vertices:
            raise reader.fail(f"{label}: {name} has {len(values)} elements but POSITION has {num_vertices}")
        return values

    texture_uvs = None
    if texcoord != 0:
        texture_uvs = optional(f"TEXCOORD_{texcoord}", "VEC2", "TEXCOORD")
        if texture_uvs is None:
            raise reader.fail(f"{label}: its material's baseColorTexture reads TEXCOORD_{texcoord}, which the "
                              "primitive does not have")
    if prim.indices is not None:
        indices = reader.accessor(prim.indices, f"{label} indices", types=("SCALAR",),
                                  components=(5121, 5123, 5125), max_count=3 * max_faces + 3)[:, 0]
    else:
        indices = np.arange(num_vertices, dtype=np.int64)
    if len(indices) and int(indices.max()) >= num_vertices:
        raise reader.fail(f"{label}: vertex index {int(indices.max())} is out of range for {num_vertices} vertices")
    faces = _triangles(indices.astype(np.int64), int(prim.mode if prim.mode is not None else 4))
    return PrimitiveArrays(positions, faces, optional("NORMAL", "VEC3", "NORMAL"),
                           optional("TANGENT", "VEC4", "TANGENT"), optional("TEXCOORD_0", "VEC2", "TEXCOORD"),
                           texture_uvs)


def _draco_arrays(reader: GltfReader, prim: Any, ext: dict[str, Any], accessors: dict[str, Any], label: str,
                  max_faces: int, texcoord: int) -> PrimitiveArrays:
    """A KHR_draco_mesh_compression primitive, decoded; normalized integer attributes scaled like accessors."""
    if prim.mode not in (None, 4, 5):
        raise reader.fail(f"{label}: {DRACO} requires TRIANGLES or TRIANGLE_STRIP, got mode {prim.mode}")
    attributes = ext.get("attributes")
    if not isinstance(attributes, dict) or not all(is_int(v) for v in attributes.values()):
        raise reader.fail(f"{label}: {DRACO}.attributes must map attribute names to integer ids")
    data, start, length, _ = reader.buffer_view(ext.get("bufferView"), f"{label} {DRACO}")
    faces, decoded = gltf_ext.decode_draco(data[start:start + length], attributes, reader.fail, label)
    if len(faces) > max_faces:
        raise UserError(f"{label} decodes to {len(faces):,} triangles, over max_faces = {max_faces:,}",
                        file=reader.name, param="max_faces", hint="raise max_faces or decimate the scene")

    def values(name: str, width: int) -> np.ndarray | None:
        if name not in decoded:
            return None
        array = decoded[name]
        if array.shape[1] != width:
            raise reader.fail(f"{label}: {DRACO} attribute {name} has {array.shape[1]} components, expected {width}")
        acc = reader.item("accessors", accessors.get(name), f"{label} {name}") if accessors.get(name) is not None \
            else None
        if acc is not None and acc.normalized and array.dtype.kind in "iu":
            return np.maximum(array.astype(np.float64) / NORMALIZED_SCALE.get(acc.componentType, 1.0), -1.0)
        return array.astype(np.float64)

    positions = values("POSITION", 3)
    assert positions is not None  # decode_draco requires it
    if not np.isfinite(positions).all():
        raise reader.fail(f"{label}: {DRACO} POSITION has NaN or infinite values")
    texture_uvs = values(f"TEXCOORD_{texcoord}", 2) if texcoord != 0 else None
    if texcoord != 0 and texture_uvs is None:
        raise reader.fail(f"{label}: its material's baseColorTexture reads TEXCOORD_{texcoord}, which the "
                          "primitive does not have")
    return PrimitiveArrays(positions, faces, values("NORMAL", 3), values("TANGENT", 4), values("TEXCOORD_0", 2),
                           texture_uvs)
