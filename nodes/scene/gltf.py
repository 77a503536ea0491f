"""glTF 2.0 (.gltf + external/data-URI buffers, .glb) -> world-space mesh parts.

Untrusted input: every structural problem (container, JSON, indices into
arrays, byte ranges, component types, non-finite numbers, out-of-range
vertex indices, size limits) is a `UserError(file=path)` that says what is
wrong; the container is parsed here (so the messages are exact) and the JSON
structure by pygltflib. Nothing is allocated from a size field before that
size is checked against the bytes actually present or `max_faces`.

Conventions of the returned parts:
- one part per (node, primitive) reachable from the default scene; node
  transforms (matrix or TRS, composed down the hierarchy) are applied to
  positions, normals (inverse transpose) and tangents; a mirroring
  transform flips the triangle winding so front faces stay counter-clockwise;
- node name: the node's `name`, else its mesh's name, else `node_<index>`;
  a name used by an earlier node gets a `.001`, `.002`... suffix;
  part name: the node name when its mesh has one primitive, else
  `<node>_<primitive index>`;
- triangle strips and fans become triangle lists; points and lines are
  skipped (logged);
- instancing: a mesh used by several nodes gives one part per node (each
  with that node's transform and name), so `segment.parts` makes one
  instance per node; a node with EXT_mesh_gpu_instancing gives one part per
  GPU instance, named `<node>_<k>`;
- `texture`: the material's baseColor image decoded to linear RGB, multiplied
  by the RGB of `baseColorFactor` (both linear, as the glTF spec shades
  them), downscaled so its long side is at most `texture_size`;
  `texture_uvs`: the UVs it is sampled at, i.e. the baseColor's `texCoord`
  set (TEXCOORD_0, TEXCOORD_1...) with its `KHR_texture_transform` applied
  as the spec writes it (`uv.apply_texture_transform`); the transform is
  recorded in the part info as `base_color_texture_transform` (already
  applied: consumers sample `Scene.source_uvs` as they are);
- accessors: sparse accessors are decoded (base values, then the sparse
  substitutions); any index type (uint32 for meshes over 65k vertices);
- extensions (`gltf_ext`): Draco-compressed primitives are decoded with
  DracoPy; `KHR_mesh_quantization` integer attributes are read; with
  `KHR_materials_variants` each primitive keeps its default material; a
  required extension graphflow cannot read is a `UserError` naming it, an
  optional one is ignored with a one-line note.
"""
from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import math
import struct
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib
import torch

from graphflow import UserError

from . import gltf_ext
from .gltf_ext import BASISU, DRACO, GPU_INSTANCING, MESHOPT, QUANTIZATION, WEBP
from .images import DEFAULT_MAX_PIXELS, decode_image_bytes, fit_long_side, load_image
from .uv import apply_texture_transform

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


@dataclass
class MeshPart:
    """One primitive of one node, in world space, before clean-up."""

    name: str
    info: dict[str, Any]
    positions: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64 (may still contain degenerate triangles)
    normals: np.ndarray | None = None
    uvs: np.ndarray | None = None
    tangents: np.ndarray | None = None
    texture: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    source_uvs: np.ndarray | None = None  # filled by loader.clean_part: the texture lookup UVs, NaN where absent
    texture_uvs: np.ndarray | None = None  # UVs `texture` is sampled at (texCoord set, transform applied); None: uvs


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
        return _is_int(value)
    if kind == NUMBERS:
        return isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    if kind == INTS:
        return isinstance(value, list) and all(_is_int(x) for x in value)
    if kind == STR:
        return isinstance(value, str)
    if kind == DICT:
        return isinstance(value, dict)
    if kind == BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(x, dict) for x in value)


def schema_problem(doc: dict[str, Any]) -> str | None:
    """The first field of `doc` (among those the loader reads) with a wrong JSON type, as a message."""
    if "scene" in doc and not _is_int(doc["scene"]):
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
                        if not _is_int(index):
                            return (f"meshes[{i}].primitives[{j}].attributes.{name} must be an integer, "
                                    f"got {index!r:.60}")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Reader:
    """State of one load: the parsed document, its file, lazily loaded buffers."""

    def __init__(self, path: Path, max_faces: int, max_pixels: int, texture_size: int,
                 log: logging.Logger) -> None:
        self.path = path
        self.name = str(path)
        self.max_faces = max_faces
        self.max_pixels = max_pixels
        self.texture_size = texture_size
        self.log = log
        self.glb_bin: bytes | None = None
        self.buffers: dict[int, bytes] = {}
        self.textures: dict[tuple[int, tuple[float, float, float]], torch.Tensor | None] = {}
        self.doc: pygltflib.GLTF2
        self.raw: dict[str, Any] = {}  # the JSON as parsed, for fields read before/beside pygltflib
        self.extensions: set[str] = set()

    # ---- errors ----
    def fail(self, message: str, hint: str | None = None) -> UserError:
        return UserError(message, file=self.name, hint=hint or "re-export the scene with a glTF 2.0 exporter")

    # ---- container ----
    def parse(self, data: bytes) -> None:
        if self.path.suffix.lower() == ".glb" or data[:4] == GLB_MAGIC:
            text = self._parse_glb(data)
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise self.fail("not a glTF file: the JSON is not UTF-8 text (a .glb must start with 'glTF')") from None
        try:
            obj = json.loads(text)
        except RecursionError:
            raise self.fail("the glTF JSON is nested too deeply") from None
        except ValueError as exc:
            raise self.fail(f"the glTF JSON is malformed ({exc})") from None
        if not isinstance(obj, dict):
            raise self.fail("the glTF JSON must be an object")
        asset = obj.get("asset")
        version = asset.get("version") if isinstance(asset, dict) else None
        if not isinstance(version, str) or not version.startswith("2."):
            raise self.fail(f"not a glTF 2.0 file (asset.version is {version!r})")
        problem = schema_problem(obj)
        if problem:
            raise self.fail(problem)
        self.raw = obj
        self.extensions = gltf_ext.check_extensions(obj, self.fail, self.name, self.log)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # dataclasses_json warns on every optional field left out
                self.doc = pygltflib.GLTF2.from_json(text, infer_missing=True)
        except RecursionError:
            raise self.fail("the glTF JSON is nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 - schema mismatches surface as many exception types
            raise self.fail(f"the glTF JSON does not follow the glTF schema ({type(exc).__name__}: {exc})") from None

    def _parse_glb(self, data: bytes) -> str:
        if len(data) < 12:
            raise self.fail(f"truncated .glb: {len(data)} bytes, less than the 12-byte header")
        magic, version, length = struct.unpack_from("<4sII", data, 0)
        if magic != GLB_MAGIC:
            raise self.fail(f"bad .glb magic {magic!r} (expected b'glTF')", hint="is this really a .glb file?")
        if version != 2:
            raise self.fail(f"unsupported .glb container version {version} (expected 2)")
        if length != len(data):
            state = "truncated" if length > len(data) else "has trailing bytes"
            raise self.fail(f"the .glb header says {length} bytes but the file has {len(data)} ({state})")
        offset = 12
        json_chunk: bytes | None = None
        while offset < length:
            if offset + 8 > length:
                raise self.fail(f"truncated .glb chunk header at byte {offset}")
            chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
            start, end = offset + 8, offset + 8 + chunk_length
            if end > length:
                raise self.fail(f"a .glb chunk at byte {offset} claims {chunk_length} bytes, past the end of the file")
            if json_chunk is None:
                if chunk_type != CHUNK_JSON:
                    raise self.fail("the first .glb chunk is not JSON")
                json_chunk = data[start:end]
            elif chunk_type == CHUNK_BIN:
                if self.glb_bin is not None:
                    raise self.fail("the .glb has more than one BIN chunk")
                self.glb_bin = data[start:end]
            offset = end
        if json_chunk is None:
            raise self.fail("the .glb has no JSON chunk")
        try:
            return json_chunk.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self.fail("the .glb JSON chunk is not UTF-8 text") from None

    # ---- generic checks ----
    def item(self, collection: str, index: Any, what: str) -> Any:
        items = getattr(self.doc, collection, None) or []
        if not _is_int(index) or not 0 <= index < len(items):
            raise self.fail(f"{what} refers to {collection}[{index!r}], but there are {len(items)}")
        value = items[index]
        if value is None or isinstance(value, (int, float, str, list)):
            raise self.fail(f"{collection}[{index}] is not an object")
        return value

    def uint(self, value: Any, what: str, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        if not _is_int(value) or value < 0:
            raise self.fail(f"{what} must be a non-negative integer, got {value!r}")
        return int(value)

    # ---- buffers ----
    def buffer(self, index: int, what: str) -> bytes:
        if index in self.buffers:
            return self.buffers[index]
        buf = self.item("buffers", index, what)
        declared = self.uint(buf.byteLength, f"buffers[{index}].byteLength")
        uri = buf.uri
        extensions = buf.extensions if isinstance(buf.extensions, dict) else {}
        if uri is None and isinstance(extensions.get(MESHOPT), dict) and extensions[MESHOPT].get("fallback"):
            raise self.fail(f"{what} reads buffers[{index}], a placeholder for {MESHOPT} data without a fallback",
                            hint=gltf_ext.UNSUPPORTED[MESHOPT])
        if uri is None:
            if self.glb_bin is None or index != 0:
                raise self.fail(f"buffers[{index}] has no uri and there is no .glb BIN chunk for it")
            data = self.glb_bin
        elif not isinstance(uri, str):
            raise self.fail(f"buffers[{index}].uri must be a string")
        else:
            data = self.read_uri(uri, f"buffers[{index}]")
        if declared > len(data):
            raise self.fail(f"buffers[{index}] declares {declared} bytes but only {len(data)} are present "
                            "(truncated buffer?)")
        self.buffers[index] = data[:declared]
        return self.buffers[index]

    def read_uri(self, uri: str, what: str) -> bytes:
        if uri.startswith("data:"):
            header, sep, payload = uri.partition(",")
            if not sep or not header.endswith(";base64"):
                raise self.fail(f"{what}: only base64 data URIs are supported")
            try:
                return base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(f"{what}: the base64 data URI is corrupt") from None
        if "://" in uri or uri.startswith("/") or uri.startswith("\\"):
            raise self.fail(f"{what}: uri {uri!r} must be a path relative to the glTF file")
        target = self.path.parent / urllib.parse.unquote(uri)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{what} refers to a file that does not exist", file=str(target),
                            hint=f"keep the files next to {self.name}") from None
        except OSError as exc:
            raise UserError(f"{what}: cannot read the file ({exc.strerror or exc})", file=str(target)) from None

    def buffer_view(self, index: Any, what: str) -> tuple[bytes, int, int, int | None]:
        """(buffer bytes, start, length, stride) of a bufferView, range-checked."""
        view = self.item("bufferViews", index, what)
        buffer_index = view.buffer
        data = self.buffer(buffer_index, f"bufferViews[{index}]") if _is_int(buffer_index) else None
        if data is None:
            raise self.fail(f"bufferViews[{index}].buffer must be an index into buffers")
        start = self.uint(view.byteOffset, f"bufferViews[{index}].byteOffset", default=0)
        length = self.uint(view.byteLength, f"bufferViews[{index}].byteLength")
        if start + length > len(data):
            raise self.fail(f"bufferViews[{index}] spans bytes {start}..{start + length} of buffers[{buffer_index}], "
                            f"which has {len(data)} bytes")
        stride = view.byteStride
        if stride is not None:
            stride = self.uint(stride, f"bufferViews[{index}].byteStride")
            if not 4 <= stride <= 252:
                raise self.fail(f"bufferViews[{index}].byteStride {stride} is outside 4..252")
        return data, start, length, stride

    # ---- accessors ----
    def accessor(self, index: Any, what: str, *, types: tuple[str, ...], components: tuple[int, ...],
                 max_count: int) -> np.ndarray:
        """An accessor's elements as float64/int64 `[count, n]`, normalized ints scaled to [0, 1]/[-1, 1]."""
        acc = self.item("accessors", index, what)
        label = f"accessors[{index}] ({what})"
        ctype, atype = acc.componentType, acc.type
        if ctype not in components:
            raise self.fail(f"{label} has componentType {ctype!r}; expected one of {list(components)}")
        if atype not in types:
            raise self.fail(f"{label} has type {atype!r}; expected {' or '.join(types)}")
        count = self.uint(acc.count, f"{label}.count")
        if count == 0:
            raise self.fail(f"{label} has count 0")
        if count > max_count:
            raise UserError(f"{label} has {count:,} elements, over the limit of {max_count:,} implied by max_faces",
                            file=self.name, param="max_faces", hint="raise max_faces if the scene is really this large")
        n = TYPE_SIZES[atype]
        dtype = COMPONENT_DTYPES[ctype]
        elem = n * dtype.itemsize
        if acc.bufferView is None:
            array = np.zeros((count, n), dtype=dtype)
        else:
            data, start, length, stride = self.buffer_view(acc.bufferView, label)
            stride = stride or elem
            offset = self.uint(acc.byteOffset, f"{label}.byteOffset", default=0)
            if stride < elem:
                raise self.fail(f"{label}: byteStride {stride} is smaller than one element ({elem} bytes)")
            needed = offset + stride * (count - 1) + elem
            if needed > length:
                raise self.fail(f"{label} needs {needed} bytes (byteOffset {offset}, count {count}) but its bufferView "
                                f"has {length}", hint="the file is truncated or corrupt")
            array = np.ndarray(shape=(count, n), dtype=dtype, buffer=data, offset=start + offset,
                               strides=(stride, dtype.itemsize)).copy()
        sparse = self.raw_item("accessors", index).get("sparse")
        if sparse is not None:
            self.apply_sparse(array, sparse, label)
        if ctype == 5126:
            return array.astype(np.float64)
        if acc.normalized:
            scale = NORMALIZED_SCALE.get(ctype)
            if scale is None:
                raise self.fail(f"{label} is normalized with componentType {ctype}, which glTF does not allow")
            return np.maximum(array.astype(np.float64) / scale, -1.0)
        return array.astype(np.int64)

    def raw_item(self, collection: str, index: int) -> dict[str, Any]:
        """The JSON object of an (already range-checked) item, as written in the file."""
        item = (self.raw.get(collection) or [])[index]
        return item if isinstance(item, dict) else {}

    def apply_sparse(self, array: np.ndarray, sparse: Any, label: str) -> None:
        """Write a sparse accessor's substitutions into its base values `array` ([count, n], in place)."""
        where = f"{label}.sparse"
        if not isinstance(sparse, dict) or not isinstance(sparse.get("indices"), dict) \
                or not isinstance(sparse.get("values"), dict):
            raise self.fail(f"{where} must be an object with 'count', 'indices' and 'values'")
        count = self.uint(sparse.get("count"), f"{where}.count")
        if not 1 <= count <= len(array):
            raise self.fail(f"{where}.count is {count}; it must be in 1..{len(array)} (the accessor's count)")
        indices_info, values_info = sparse["indices"], sparse["values"]
        itype = indices_info.get("componentType")
        if itype not in (5121, 5123, 5125):
            raise self.fail(f"{where}.indices.componentType must be 5121, 5123 or 5125, got {itype!r}")
        indices = self._packed(indices_info, COMPONENT_DTYPES[itype], count, 1, f"{where}.indices")[:, 0]
        indices = indices.astype(np.int64)
        if (np.diff(indices) <= 0).any() or int(indices[-1]) >= len(array):
            raise self.fail(f"{where}.indices must increase strictly and stay below {len(array)}")
        values = self._packed(values_info, array.dtype, count, array.shape[1], f"{where}.values")
        array[indices] = values

    def _packed(self, info: dict[str, Any], dtype: np.dtype, count: int, n: int, where: str) -> np.ndarray:
        """`count` tightly packed elements of `n` components from `info`'s bufferView and byteOffset."""
        data, start, length, _ = self.buffer_view(info.get("bufferView"), where)
        offset = self.uint(info.get("byteOffset"), f"{where}.byteOffset", default=0)
        needed = offset + count * n * dtype.itemsize
        if needed > length:
            raise self.fail(f"{where} needs {needed} bytes but its bufferView has {length}",
                            hint="the file is truncated or corrupt")
        return np.frombuffer(data, dtype=dtype, count=count * n, offset=start + offset).reshape(count, n).copy()

    # ---- scene graph ----
    def node_matrix(self, index: int, node: Any) -> np.ndarray:
        label = f"nodes[{index}]"
        if node.matrix is not None:
            m = node.matrix
            if not isinstance(m, list) or len(m) != 16 or not all(_is_number(x) for x in m):
                raise self.fail(f"{label}.matrix must be 16 finite numbers")
            return np.array(m, dtype=np.float64).reshape(4, 4).T  # column-major in glTF
        t = self.vector(node.translation, 3, f"{label}.translation", [0.0, 0.0, 0.0])
        r = self.vector(node.rotation, 4, f"{label}.rotation", [0.0, 0.0, 0.0, 1.0])
        s = self.vector(node.scale, 3, f"{label}.scale", [1.0, 1.0, 1.0])
        return self.trs_matrix(t, r, s, label)

    def trs_matrix(self, t: np.ndarray, r: np.ndarray, s: np.ndarray, label: str) -> np.ndarray:
        """4x4 matrix of a translation, a (normalized here) rotation quaternion xyzw and a scale."""
        norm = float(np.linalg.norm(r))
        if norm < 1e-8:
            raise self.fail(f"{label}.rotation is a zero quaternion")
        x, y, z, w = r / norm
        rot = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        m = np.eye(4)
        m[:3, :3] = rot * s[None, :]
        m[:3, 3] = t
        return m

    def gpu_instances(self, index: int, node: Any, world: np.ndarray) -> list[tuple[int | None, np.ndarray]]:
        """(instance number or None, world matrix) per copy of a node's mesh: one copy, or one per
        EXT_mesh_gpu_instancing instance (its TRS applied in the node's space)."""
        extensions = node.extensions if isinstance(node.extensions, dict) else {}
        ext = extensions.get(GPU_INSTANCING)
        if ext is None or GPU_INSTANCING not in self.extensions:
            return [(None, world)]
        label = f"nodes[{index}].extensions.{GPU_INSTANCING}"
        attributes = ext.get("attributes") if isinstance(ext, dict) else None
        if not isinstance(attributes, dict) or not attributes:
            raise self.fail(f"{label}.attributes must name TRANSLATION, ROTATION and/or SCALE accessors")
        arrays = {}
        for name, atype, components in (("TRANSLATION", "VEC3", (5126,)), ("ROTATION", "VEC4", (5126, 5120, 5122)),
                                        ("SCALE", "VEC3", (5126,))):
            if name in attributes:
                arrays[name] = self.accessor(attributes[name], f"{label} {name}", types=(atype,),
                                             components=components, max_count=self.max_faces)
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise self.fail(f"{label}: its accessors have different counts ({sorted(counts)})")
        count = counts.pop()
        t = arrays.get("TRANSLATION", np.zeros((count, 3)))
        r = arrays.get("ROTATION", np.tile([0.0, 0.0, 0.0, 1.0], (count, 1)))
        s = arrays.get("SCALE", np.ones((count, 3)))
        if not all(np.isfinite(a).all() for a in (t, r, s)):
            raise self.fail(f"{label}: an instance transform is NaN or infinite")
        return [(k, world @ self.trs_matrix(t[k], r[k], s[k], f"{label} instance {k}")) for k in range(count)]

    def vector(self, value: Any, n: int, what: str, default: list[float]) -> np.ndarray:
        if value is None:
            return np.array(default, dtype=np.float64)
        if not isinstance(value, list) or len(value) != n or not all(_is_number(x) for x in value):
            raise self.fail(f"{what} must be {n} finite numbers")
        return np.array(value, dtype=np.float64)

    def walk(self) -> list[tuple[int, np.ndarray]]:
        """(node index, world matrix) of every node reachable from the default scene, depth first."""
        nodes = self.doc.nodes or []
        scenes = self.doc.scenes or []
        if scenes:
            scene_index = self.doc.scene if self.doc.scene is not None else 0
            scene = self.item("scenes", scene_index, "the default scene")
            roots = scene.nodes or []
            if not isinstance(roots, list):
                raise self.fail(f"scenes[{scene_index}].nodes must be a list")
        else:
            children: set[int] = set()
            for node in nodes:
                kids = getattr(node, "children", None)
                if isinstance(kids, list):
                    children.update(k for k in kids if _is_int(k))
            roots = [i for i in range(len(nodes)) if i not in children]
        out: list[tuple[int, np.ndarray]] = []
        seen: set[int] = set()
        stack = [(root, np.eye(4), "scene") for root in reversed(roots)]
        while stack:
            index, parent, via = stack.pop()
            node = self.item("nodes", index, via)
            if index in seen:
                raise self.fail(f"nodes[{index}] appears twice in the node hierarchy (a cycle or a shared child)")
            seen.add(index)
            world = parent @ self.node_matrix(index, node)
            out.append((index, world))
            kids = node.children or []
            if not isinstance(kids, list):
                raise self.fail(f"nodes[{index}].children must be a list")
            for child in reversed(kids):
                stack.append((child, world, f"nodes[{index}].children"))
        return out

    # ---- materials ----
    def material_of(self, index: Any, label: str) -> tuple[str, dict[str, Any], torch.Tensor | None]:
        """(material name, extra part info, linear baseColor texture or None)."""
        if index is None:
            return "default", {}, None
        mat = self.item("materials", index, f"{label}.material")
        name = mat.name if isinstance(mat.name, str) and mat.name else f"material_{index}"
        info: dict[str, Any] = {}
        pbr = mat.pbrMetallicRoughness
        factor = [1.0, 1.0, 1.0, 1.0]
        texture = None
        if pbr is not None and not isinstance(pbr, (int, float, str, list)):
            if pbr.baseColorFactor is not None:
                factor = self.vector(pbr.baseColorFactor, 4, f"materials[{index}].baseColorFactor", factor).tolist()
            info["base_color_factor"] = [float(x) for x in factor]
            tex_info = pbr.baseColorTexture
            if tex_info is not None and not isinstance(tex_info, (int, float, str, list)):
                info.update(self.texture_lookup(tex_info, index))
                texture, unreadable = self.base_color(tex_info.index, index, tuple(float(x) for x in factor[:3]))
                if unreadable is not None:
                    info["unreadable_texture"] = unreadable
        return name, info, texture

    def base_color_texcoord(self, index: Any, label: str) -> int:
        """The TEXCOORD set a material's baseColor reads (0 without a material or texture); decodes nothing."""
        if index is None:
            return 0
        pbr = self.item("materials", index, f"{label}.material").pbrMetallicRoughness
        tex_info = getattr(pbr, "baseColorTexture", None) if not isinstance(pbr, (int, float, str, list)) else None
        if tex_info is None or isinstance(tex_info, (int, float, str, list)):
            return 0
        return int(self.texture_lookup(tex_info, index).get("base_color_texcoord", 0))

    def texture_lookup(self, tex_info: Any, material_index: int) -> dict[str, Any]:
        """Part info saying where the baseColor is sampled: `base_color_texcoord` (when not 0) and
        `base_color_texture_transform` (when KHR_texture_transform is present and not the identity)."""
        where = f"materials[{material_index}].pbrMetallicRoughness.baseColorTexture"
        texcoord = self.uint(tex_info.texCoord, f"{where}.texCoord", default=0)
        try:
            transform = gltf_ext.texture_transform(tex_info.extensions)
        except ValueError as exc:
            raise self.fail(f"{where}: {exc}") from None
        info: dict[str, Any] = {}
        if transform is not None:
            texcoord = transform.pop("texCoord", texcoord)  # the extension's texCoord overrides the textureInfo's
            if not gltf_ext.is_identity(transform):
                info["base_color_texture_transform"] = transform
        if texcoord != 0:
            info["base_color_texcoord"] = texcoord
        return info

    def base_color(self, texture_index: Any, material_index: int, factor: tuple[float, float, float]
                   ) -> tuple[torch.Tensor | None, dict[str, str] | None]:
        """(the tinted baseColor or None, the record of an image that could not be read or None).

        An image that cannot be decoded (KTX2, a format Pillow lacks, corrupt bytes, over max_pixels) or a
        missing image file does not stop the load (issue 23): most graphs replace the source textures, and
        the node that reads them raises from the record (`loader.require_part_textures`)."""
        tex = self.item("textures", texture_index, f"materials[{material_index}].baseColorTexture")
        source = tex.source
        extensions = tex.extensions if isinstance(tex.extensions, dict) else {}
        webp = extensions.get(WEBP)
        if isinstance(webp, dict) and _is_int(webp.get("source")):
            source = webp["source"]  # preferred over the fallback `source` (Pillow decodes WebP)
        basisu = extensions.get(BASISU)
        if source is None and isinstance(basisu, dict) and _is_int(basisu.get("source")):
            return None, self.unreadable(basisu["source"], f"textures[{texture_index}]", "KTX2 (KHR_texture_basisu) "
                                         "images are not decoded: no Python KTX2 decoder is installed")
        if source is None:
            self.log.info("%s: textures[%s] has no PNG/JPEG/WebP source; its part gets no texture", self.name,
                          texture_index)
            return None, None
        key = (int(source) if _is_int(source) else -1, factor)
        if key not in self.textures:
            try:
                pixels = self.image_pixels(source, f"textures[{texture_index}].source")
            except UserError as exc:
                if exc.param is not None or not exc.file or exc.file == self.name:
                    raise  # the glTF JSON itself is at fault (a bad index, a uri that is not relative)
                return None, self.unreadable(source, f"textures[{texture_index}]", exc.message)
            pixels = fit_long_side(pixels, self.texture_size)
            self.textures[key] = (pixels * torch.tensor(factor, dtype=torch.float32)[:, None, None]).contiguous()
        return self.textures[key], None

    def image_pixels(self, source: Any, what: str) -> torch.Tensor:
        """An image of the document decoded (`UserError` naming the image file, or the glb and the image)."""
        image = self.item("images", source, what)
        label = f"images[{source}]"
        if image.uri is not None:
            if not isinstance(image.uri, str):
                raise self.fail(f"{label}.uri must be a string")
            if image.uri.startswith("data:"):
                return decode_image_bytes(self.read_uri(image.uri, label), name=f"{self.name} {label}",
                                          max_pixels=self.max_pixels)
            if "://" in image.uri or image.uri.startswith(("/", "\\")):
                raise self.fail(f"{label}: uri {image.uri!r} must be a path relative to the glTF file")
            return load_image(self.path.parent / urllib.parse.unquote(image.uri), max_pixels=self.max_pixels)
        if image.bufferView is not None:
            data, start, length, _ = self.buffer_view(image.bufferView, label)
            return decode_image_bytes(data[start:start + length], name=f"{self.name} {label}",
                                      max_pixels=self.max_pixels)
        raise self.fail(f"{label} has neither a uri nor a bufferView")

    def unreadable(self, source: Any, texture: str, reason: str) -> dict[str, str]:
        """The record of a baseColor image that could not be read: which image, its file, its format."""
        raw = self.raw_item("images", source) if _is_int(source) and 0 <= source < len(self.raw.get("images") or []) \
            else {}
        uri, mime = raw.get("uri"), raw.get("mimeType")
        if isinstance(uri, str) and not uri.startswith("data:"):
            where = str(self.path.parent / urllib.parse.unquote(uri))
            extension = Path(urllib.parse.unquote(uri)).suffix.lstrip(".").lower() or "none"
        else:
            where = f"{self.name} images[{source}]"
            extension = mime.split("/")[-1].lower() if isinstance(mime, str) and "/" in mime else "unknown"
        if isinstance(mime, str) and "/" in mime and extension in ("none", "unknown"):
            extension = mime.split("/")[-1].lower()
        return {"file": where, "image": f"images[{source}]", "texture": texture, "extension": extension,
                "reason": reason}


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


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 1
    while f"{name}.{n:03d}" in taken:
        n += 1
    return f"{name}.{n:03d}"


def read_scene_file(path: Path) -> bytes:
    """The bytes of a scene file; a missing or unreadable file is a `UserError(file=path)`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError("the scene file does not exist", file=str(path), hint="check the path") from None
    except IsADirectoryError:
        raise UserError("this is a directory, not a scene file", file=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read the scene file ({exc.strerror or exc})", file=str(path)) from None


def load_gltf(path: str | Path, *, max_faces: int = 5_000_000, max_pixels: int = DEFAULT_MAX_PIXELS,
              texture_size: int = 2048, log: logging.Logger | None = None) -> list[MeshPart]:
    """Read a .gltf/.glb into world-space `MeshPart`s (see the module docstring for conventions).

    Raises `UserError(file=path)` for any problem with the file; for files
    with more than `max_faces` triangles, a `UserError` naming `max_faces`.
    """
    path = Path(path)
    log = log or logging.getLogger("graphflow.nodes.scene")
    reader = _Reader(path, max_faces, max_pixels, texture_size, log)
    reader.parse(read_scene_file(path))
    with np.errstate(all="ignore"):  # extreme values are checked explicitly (finite positions, transforms)
        return _read_parts(reader, path, max_faces, log)


_Plan = list[tuple[int, int | None, np.ndarray, int, Any, int]]  # node, GPU copy, world, mesh, primitive, its index


def _plan(reader: _Reader, path: Path, max_faces: int, log: logging.Logger) -> _Plan:
    """Pass 1: which primitives to read, and whether the triangle count fits the limit (no big reads yet)."""
    doc = reader.doc
    plan: _Plan = []
    total_faces = 0
    for node_index, node_world in reader.walk():
        node = doc.nodes[node_index]
        if node.mesh is None:
            continue
        mesh = reader.item("meshes", node.mesh, f"nodes[{node_index}].mesh")
        prims = mesh.primitives
        if not isinstance(prims, list) or not prims:
            raise reader.fail(f"meshes[{node.mesh}] has no primitives")
        for (copy, world), (prim_index, prim) in itertools.product(
                reader.gpu_instances(node_index, node, node_world), enumerate(prims)):
            label = f"meshes[{node.mesh}].primitives[{prim_index}]"
            if prim is None or isinstance(prim, (int, float, str, list)):
                raise reader.fail(f"{label} is not an object")
            mode = 4 if prim.mode is None else prim.mode
            if mode not in MODE_NAMES:
                raise reader.fail(f"{label} has unknown mode {mode!r}")
            if mode < 4:
                log.info("%s: %s is %s, not triangles; skipped", path, label, MODE_NAMES[mode])
                continue
            if prim.indices is not None:
                count_of = reader.item("accessors", prim.indices, f"{label}.indices").count
            else:
                attrs = prim.attributes
                position = getattr(attrs, "POSITION", None) if attrs is not None else None
                count_of = reader.item("accessors", position, f"{label}.attributes.POSITION").count
            count = reader.uint(count_of, f"{label} index count")
            total_faces += count // 3 if mode == 4 else max(count - 2, 0)
            if total_faces > max_faces:
                raise UserError(f"the scene has more than max_faces = {max_faces:,} triangles", file=str(path),
                                param="max_faces", hint="raise max_faces (memory grows with it) or decimate the scene")
            plan.append((node_index, copy, world, int(node.mesh), prim, prim_index))
    if not plan:
        raise reader.fail("the scene has no triangle meshes (only points/lines, or no meshes at all)")
    return plan


def _read_parts(reader: _Reader, path: Path, max_faces: int, log: logging.Logger) -> list[MeshPart]:
    """Pass 2: each planned primitive read, moved to world space and named (see the module docstring)."""
    doc = reader.doc
    plan = _plan(reader, path, max_faces, log)
    parts: list[MeshPart] = []
    node_names: dict[tuple[int, int | None], str] = {}
    taken: set[str] = set()
    for node_index, copy, world, mesh_index, prim, prim_index in plan:
        node = doc.nodes[node_index]
        mesh = doc.meshes[mesh_index]
        mesh_name = mesh.name if isinstance(mesh.name, str) and mesh.name else f"mesh_{mesh_index}"
        if (node_index, copy) not in node_names:
            base = node.name if isinstance(node.name, str) and node.name else (
                mesh.name if isinstance(mesh.name, str) and mesh.name else f"node_{node_index}")
            base = base if copy is None else f"{base}_{copy}"  # one name (instance) per GPU instance
            node_names[node_index, copy] = _unique_name(base, taken)
            taken.add(node_names[node_index, copy])
        node_name = node_names[node_index, copy]
        label = f"meshes[{mesh_index}].primitives[{prim_index}]"
        raw_prim = reader.raw_item("meshes", mesh_index).get("primitives", [])[prim_index]
        arrays = _primitive_arrays(reader, prim, raw_prim.get("attributes") or {}, label, max_faces,
                                   reader.base_color_texcoord(prim.material, label))
        material_name, material_info, texture = reader.material_of(prim.material, label)  # geometry errors first
        name = node_name if len(mesh.primitives) == 1 else f"{node_name}_{prim_index}"
        info: dict[str, Any] = {"node": node_name, "mesh": mesh_name, "primitive": prim_index,
                                "material": material_name, **material_info}
        part = _world_part(reader, arrays, world, node_index, label, name, info)
        part.texture = texture
        if texture is not None or "base_color_texture_transform" in material_info:
            lookup = arrays.texture_uvs if arrays.texture_uvs is not None else arrays.uvs
            if lookup is not None:
                part.texture_uvs = apply_texture_transform(
                    lookup.astype(np.float32), material_info.get("base_color_texture_transform"))
        parts.append(part)
    return parts


@dataclass
class _Arrays:
    """A primitive's vertex data as read from the file (object space)."""

    positions: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    tangents: np.ndarray | None
    uvs: np.ndarray | None  # TEXCOORD_0
    texture_uvs: np.ndarray | None  # TEXCOORD_<n> of the baseColor when n != 0


def _attribute_components(reader: _Reader) -> dict[str, tuple[int, ...]]:
    """Allowed componentTypes per attribute; KHR_mesh_quantization widens them to integers."""
    if QUANTIZATION in reader.extensions:
        return {"POSITION": (5126, 5120, 5121, 5122, 5123), "NORMAL": (5126, 5120, 5122),
                "TANGENT": (5126, 5120, 5122), "TEXCOORD": (5126, 5120, 5121, 5122, 5123)}
    return {"POSITION": (5126,), "NORMAL": (5126,), "TANGENT": (5126,), "TEXCOORD": (5126, 5121, 5123)}


def _primitive_arrays(reader: _Reader, prim: Any, raw_attrs: dict[str, Any], label: str, max_faces: int,
                      texcoord: int) -> _Arrays:
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
    return _Arrays(positions, faces, optional("NORMAL", "VEC3", "NORMAL"), optional("TANGENT", "VEC4", "TANGENT"),
                   optional("TEXCOORD_0", "VEC2", "TEXCOORD"), texture_uvs)


def _draco_arrays(reader: _Reader, prim: Any, ext: dict[str, Any], accessors: dict[str, Any], label: str,
                  max_faces: int, texcoord: int) -> _Arrays:
    """A KHR_draco_mesh_compression primitive, decoded; normalized integer attributes scaled like accessors."""
    if prim.mode not in (None, 4, 5):
        raise reader.fail(f"{label}: {DRACO} requires TRIANGLES or TRIANGLE_STRIP, got mode {prim.mode}")
    attributes = ext.get("attributes")
    if not isinstance(attributes, dict) or not all(_is_int(v) for v in attributes.values()):
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
    return _Arrays(positions, faces, values("NORMAL", 3), values("TANGENT", 4), values("TEXCOORD_0", 2), texture_uvs)


def _world_part(reader: _Reader, arrays: _Arrays, world: np.ndarray, node_index: int, label: str, name: str,
                info: dict[str, Any]) -> MeshPart:
    """A primitive's arrays moved to world space by its node's matrix (normals by the inverse transpose,
    the winding flipped under a mirroring transform)."""
    if not np.isfinite(arrays.positions).all():
        bad = int(np.flatnonzero(~np.isfinite(arrays.positions).all(axis=1))[0])
        raise reader.fail(f"{label}: POSITION of vertex {bad} is NaN or infinite")
    linear = world[:3, :3]
    det = float(np.linalg.det(linear))
    if not math.isfinite(det) or abs(det) < 1e-30:
        raise reader.fail(f"nodes[{node_index}] has a singular or non-finite transform")
    world_positions = arrays.positions @ linear.T + world[:3, 3]
    if not np.isfinite(world_positions).all():
        raise reader.fail(f"{label}: positions become infinite after nodes[{node_index}]'s transform")
    faces = arrays.faces[:, [0, 2, 1]] if det < 0 else arrays.faces
    normals = arrays.normals @ np.linalg.inv(linear) if arrays.normals is not None else None
    tangents = None
    if arrays.tangents is not None:
        handedness = np.sign(det) * np.where(arrays.tangents[:, 3:] < 0, -1.0, 1.0)
        tangents = np.concatenate([arrays.tangents[:, :3] @ linear.T, handedness], axis=1)
    return MeshPart(
        name=name, info=info, positions=world_positions.astype(np.float32), faces=faces,
        normals=None if normals is None else normals.astype(np.float32),
        uvs=None if arrays.uvs is None else arrays.uvs.astype(np.float32),
        tangents=None if tangents is None else tangents.astype(np.float32),
    )


def gltf_file_dependencies(path: str | Path) -> list[Path]:
    """External files a .gltf/.glb names (buffers, images), for cache keys. Best effort: never raises;
    unreadable or malformed files give [] (loading them reports the problem)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:4] == GLB_MAGIC:
            if len(data) < 20:
                return []
            chunk_length = struct.unpack_from("<I", data, 12)[0]
            data = data[20:20 + chunk_length]
        doc = json.loads(data.decode("utf-8-sig"))
        out: list[Path] = []
        for key in ("buffers", "images"):
            for entry in doc.get(key) or []:
                uri = entry.get("uri") if isinstance(entry, dict) else None
                if isinstance(uri, str) and not uri.startswith("data:") and "://" not in uri \
                        and not uri.startswith(("/", "\\")):
                    dep = path.parent / urllib.parse.unquote(uri)
                    if dep not in out:
                        out.append(dep)
        return out
    except Exception:  # noqa: BLE001 - a cache-key helper must never fail; the load reports problems
        return []
