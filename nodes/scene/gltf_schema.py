"""The glTF 2.0 container's constants and the JSON types of the fields the loader reads (`schema_problem`).

Checked before pygltflib sees the document, so a wrong type is reported by its path (`gltf_reader`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
COMPONENT_DTYPES = {
    5120: np.dtype("<i1"), 5121: np.dtype("<u1"), 5122: np.dtype("<i2"),
    5123: np.dtype("<u2"), 5125: np.dtype("<u4"), 5126: np.dtype("<f4"),
}
TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
NORMALIZED_SCALE = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
MODE_NAMES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES", 5: "TRIANGLE_STRIP",
              6: "TRIANGLE_FAN"}



# The fields this loader reads, with their JSON types: checked before pygltflib sees the document,
# so a wrong type is reported by its path instead of as a conversion error deep in a schema library.
INT, NUMBERS, INTS, STR, DICT, BOOL = "an integer", "a list of numbers", "a list of integers", "a string", \
    "an object", "a boolean"
SCHEMA: dict[str, dict[str, str]] = {
    "accessors": {"bufferView": INT, "byteOffset": INT, "componentType": INT, "count": INT, "type": STR,
                  "normalized": BOOL, "sparse": DICT},
    "bufferViews": {"buffer": INT, "byteOffset": INT, "byteLength": INT, "byteStride": INT, "target": INT},
    "buffers": {"byteLength": INT, "uri": STR},
    "nodes": {"mesh": INT, "children": INTS, "matrix": NUMBERS, "translation": NUMBERS, "rotation": NUMBERS,
              "scale": NUMBERS, "name": STR},
    "meshes": {"primitives": "a list of objects", "name": STR},
    "materials": {"name": STR, "pbrMetallicRoughness": DICT},
    "textures": {"source": INT, "sampler": INT},
    "images": {"uri": STR, "bufferView": INT, "mimeType": STR},
    "scenes": {"nodes": INTS},
}
PRIMITIVE_SCHEMA = {"attributes": DICT, "indices": INT, "material": INT, "mode": INT}


def _has_type(value: Any, kind: str) -> bool:
    if kind == INT:
        return is_int(value)
    if kind == NUMBERS:
        return isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    if kind == INTS:
        return isinstance(value, list) and all(is_int(x) for x in value)
    if kind == STR:
        return isinstance(value, str)
    if kind == DICT:
        return isinstance(value, dict)
    if kind == BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(x, dict) for x in value)


def schema_problem(doc: dict[str, Any]) -> str | None:
    """The first field of `doc` (among those the loader reads) with a wrong JSON type, as a message."""
    if "scene" in doc and not is_int(doc["scene"]):
        return f"'scene' must be an integer, got {doc['scene']!r}"
    for collection, fields in SCHEMA.items():
        items = doc.get(collection)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"'{collection}' must be a list"
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return f"{collection}[{i}] must be an object"
            for key, kind in fields.items():
                if key in item and not _has_type(item[key], kind):
                    return f"{collection}[{i}].{key} must be {kind}, got {item[key]!r:.60}"
            if collection == "meshes":
                for j, prim in enumerate(item.get("primitives") or []):
                    for key, kind in PRIMITIVE_SCHEMA.items():
                        if key in prim and not _has_type(prim[key], kind):
                            return f"meshes[{i}].primitives[{j}].{key} must be {kind}, got {prim[key]!r:.60}"
                    attributes = prim.get("attributes") or {}
                    for name, index in attributes.items():
                        if not is_int(index):
                            return (f"meshes[{i}].primitives[{j}].attributes.{name} must be an integer, "
                                    f"got {index!r:.60}")
    return None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
