"""Reading a glTF file's bytes: the .gltf/.glb container, buffers, bufferViews and accessors, range-checked.

Untrusted input: nothing is allocated from a size field before that size is checked against the bytes
actually present or `max_faces`. The scene graph (`gltf_nodes`) and the materials (`gltf_materials`)
read through this class; `gltf.load_gltf` puts them together.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import struct
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib
import torch

from graphflow import UserError

from . import gltf_ext
from .gltf_ext import MESHOPT
from .gltf_schema import CHUNK_BIN, CHUNK_JSON, COMPONENT_DTYPES, GLB_MAGIC, NORMALIZED_SCALE, TYPE_SIZES, is_int, \
    is_number, schema_problem


class GltfReader:
    """State of one load: the parsed document, its file, lazily loaded buffers; the container, byte ranges
    and accessors read with every check (`UserError(file=...)` saying what is wrong)."""

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
        if not is_int(index) or not 0 <= index < len(items):
            raise self.fail(f"{what} refers to {collection}[{index!r}], but there are {len(items)}")
        value = items[index]
        if value is None or isinstance(value, (int, float, str, list)):
            raise self.fail(f"{collection}[{index}] is not an object")
        return value

    def uint(self, value: Any, what: str, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        if not is_int(value) or value < 0:
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
        data = self.buffer(buffer_index, f"bufferViews[{index}]") if is_int(buffer_index) else None
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

    def vector(self, value: Any, n: int, what: str, default: list[float]) -> np.ndarray:
        if value is None:
            return np.array(default, dtype=np.float64)
        if not isinstance(value, list) or len(value) != n or not all(is_number(x) for x in value):
            raise self.fail(f"{what} must be {n} finite numbers")
        return np.array(value, dtype=np.float64)
