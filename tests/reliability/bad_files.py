"""Builders of bad input files (glb/gltf, images, references files) from real, valid ones.

Every builder starts from a valid file (Box.glb from ../shared/assets, or a PNG made here) and
breaks exactly one thing, so a test can say which corruption a message must name.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

from PIL import Image

JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942


def split_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON document, BIN chunk payload) of a well-formed glb."""
    json_length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_length])
    bin_start = 20 + json_length
    bin_length = struct.unpack_from("<I", data, bin_start)[0]
    return doc, data[bin_start + 8:bin_start + 8 + bin_length]


def pack_glb(doc: dict[str, Any], blob: bytes) -> bytes:
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    body = struct.pack("<II", len(text), JSON_CHUNK) + text + struct.pack("<II", len(blob), BIN_CHUNK) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def edit_glb(source: bytes, edit: Callable[[dict[str, Any], bytearray], None]) -> bytes:
    doc, blob = split_glb(source)
    buf = bytearray(blob)
    edit(doc, buf)
    return pack_glb(doc, bytes(buf))


def _accessor_start(doc: dict[str, Any], accessor: int) -> tuple[dict[str, Any], int, int]:
    acc = doc["accessors"][accessor]
    view = doc["bufferViews"][acc["bufferView"]]
    return acc, view.get("byteOffset", 0) + acc.get("byteOffset", 0), view.get("byteStride", 0)


def position_accessor(doc: dict[str, Any]) -> int:
    return doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]


def set_position(value: float) -> Callable[[dict[str, Any], bytearray], None]:
    def edit(doc: dict[str, Any], blob: bytearray) -> None:
        _, start, _ = _accessor_start(doc, position_accessor(doc))
        struct.pack_into("<f", blob, start + 4, value)
    return edit


def set_index(value: int) -> Callable[[dict[str, Any], bytearray], None]:
    def edit(doc: dict[str, Any], blob: bytearray) -> None:
        acc, start, _ = _accessor_start(doc, doc["meshes"][0]["primitives"][0]["indices"])
        fmt = {5121: "<B", 5123: "<H", 5125: "<I"}[acc["componentType"]]
        struct.pack_into(fmt, blob, start + struct.calcsize(fmt), value)
    return edit


def collapse_positions(doc: dict[str, Any], blob: bytearray) -> None:
    """Every vertex at the same point: all triangles degenerate."""
    acc, start, stride = _accessor_start(doc, position_accessor(doc))
    for i in range(acc["count"]):
        struct.pack_into("<3f", blob, start + i * (stride or 12), 1.0, 2.0, 3.0)


def set_json(path: str, value: Any) -> Callable[[dict[str, Any], bytearray], None]:
    def edit(doc: dict[str, Any], blob: bytearray) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def zero_faces(doc: dict[str, Any], blob: bytearray) -> None:
    """The index accessor holds no indices at all."""
    doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["count"] = 0


def png_bytes(width: int = 8, height: int = 8, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares width x height RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64)  # a token of image data; decoding would need width*height*3 bytes
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def nan_value() -> float:
    return math.nan


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path
