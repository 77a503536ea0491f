"""A tiny self-contained SheenChair geometry reader for render tests (positions + triangles only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"
SHEEN_CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"

_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    dtype = np.dtype(_DTYPES[accessor.componentType])
    width = _WIDTH[accessor.type]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    stride = view.byteStride or dtype.itemsize * width
    rows = np.lib.stride_tricks.as_strided(
        np.frombuffer(blob, dtype=np.uint8, offset=start), shape=(accessor.count, dtype.itemsize * width),
        strides=(stride, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(accessor.count, width)


def load_sheen_chair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions [V,3], faces [F,3], uvs [V,2]) of every primitive, node transforms ignored (mesh space)."""
    if not SHEEN_CHAIR.exists():
        pytest.skip(f"SheenChair asset not found at {SHEEN_CHAIR} (../shared/assets is absent)")
    gltf = pygltflib.GLTF2().load(str(SHEEN_CHAIR))
    blob = (SHEEN_CHAIR.parent / gltf.buffers[0].uri).read_bytes()
    positions, faces, uvs = [], [], []
    offset = 0
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            vertices = _accessor(gltf, blob, primitive.attributes.POSITION)
            positions.append(vertices)
            uvs.append(_accessor(gltf, blob, primitive.attributes.TEXCOORD_0))
            faces.append(_accessor(gltf, blob, primitive.indices).reshape(-1, 3).astype(np.int64) + offset)
            offset += vertices.shape[0]
    return (torch.from_numpy(np.concatenate(positions)).float(), torch.from_numpy(np.concatenate(faces)),
            torch.from_numpy(np.concatenate(uvs)).float())
