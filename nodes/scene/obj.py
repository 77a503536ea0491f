"""Wavefront OBJ -> mesh parts.

Parts: one per (group, material) pair in order of first use. The group is
the current `g` name, else the current `o` name, else `default`; `usemtl`
names the material. A part is named by its group, or `<group>_<material>`
when the group uses several materials. `v`, `vt`, `vn`, `f` (polygons are
fan-triangulated; negative indices count from the end) are read; `l`, `p`,
`s`, `mtllib` and unknown statements are ignored. OBJ's `vt` v axis points
up, glTF's down: stored UVs are (u, 1 - v). A part gets UVs/normals only
when every corner of its faces has them.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from graphflow import UserError

from .gltf import MeshPart, read_scene_file


class _PartBuilder:
    def __init__(self, group: str, material: str) -> None:
        self.group = group
        self.material = material
        self.corners: list[tuple[int, int, int]] = []  # (v, vt, vn), -1 when absent
        self.faces: list[tuple[int, int, int]] = []  # into corners
        self.corner_index: dict[tuple[int, int, int], int] = {}

    def corner(self, key: tuple[int, int, int]) -> int:
        index = self.corner_index.get(key)
        if index is None:
            index = len(self.corners)
            self.corner_index[key] = index
            self.corners.append(key)
        return index


def _resolve(token: str, count: int, what: str, where: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise UserError(f"{where}: {what} index {token!r} is not an integer") from None
    index = value - 1 if value > 0 else count + value
    if value == 0 or not 0 <= index < count:
        raise UserError(f"{where}: {what} index {value} is out of range ({count} defined so far)")
    return index


class _ObjReader:
    """The statements of one OBJ file, read line by line into vertex arrays and parts."""

    def __init__(self, path: Path, max_faces: int) -> None:
        self.path = path
        self.max_faces = max_faces
        self.vertices: list[tuple[float, float, float]] = []
        self.texcoords: list[tuple[float, float]] = []
        self.normals: list[tuple[float, float, float]] = []
        self.parts: dict[tuple[str, str], _PartBuilder] = {}
        self.object_name, self.group_name, self.material = "", "", "default"
        self.total_faces = 0
        self.resolved: dict[str, tuple[int, int, int]] = {}  # face tokens already resolved (`face_vertex`)

    def floats(self, tokens: list[str], n: int, lineno: int, what: str) -> list[float]:
        path = self.path
        if len(tokens) < n:
            raise UserError(f"line {lineno}: '{what}' needs {n} numbers", file=str(path), line=lineno)
        try:
            values = [float(t) for t in tokens[:n]]
        except ValueError:
            raise UserError(f"line {lineno}: '{what}' has a value that is not a number", file=str(path),
                            line=lineno) from None
        if not all(map(math.isfinite, values)):
            raise UserError(f"line {lineno}: '{what}' has a NaN or infinite value", file=str(path), line=lineno)
        return values

    def read_line(self, lineno: int, raw: str) -> None:
        line = raw.split("#", 1)[0].strip()
        if not line:
            return
        keyword, *tokens = line.split()
        if keyword == "v":
            x, y, z = self.floats(tokens, 3, lineno, "v")
            self.vertices.append((x, y, z))
        elif keyword == "vt":
            u, v = (self.floats(tokens, 2, lineno, "vt") if len(tokens) >= 2
                    else (*self.floats(tokens, 1, lineno, "vt"), 0.0))
            self.texcoords.append((u, 1.0 - v))
        elif keyword == "vn":
            x, y, z = self.floats(tokens, 3, lineno, "vn")
            self.normals.append((x, y, z))
        elif keyword == "o":
            self.object_name = " ".join(tokens)
        elif keyword == "g":
            self.group_name = " ".join(tokens)
        elif keyword == "usemtl":
            self.material = " ".join(tokens) or "default"
        elif keyword == "f":
            self.read_face(lineno, tokens)

    def read_face(self, lineno: int, tokens: list[str]) -> None:
        path = self.path
        if len(tokens) < 3:
            raise UserError(f"line {lineno}: a face needs at least 3 vertices", file=str(path), line=lineno)
        group = self.group_name or self.object_name or "default"
        builder = self.parts.get((group, self.material))
        if builder is None:
            builder = self.parts[(group, self.material)] = _PartBuilder(group, self.material)
        try:
            corners = [builder.corner(self.face_vertex(token, lineno)) for token in tokens]
        except UserError as exc:
            raise UserError(exc.message, file=str(path), line=lineno) from None
        for k in range(1, len(corners) - 1):
            builder.faces.append((corners[0], corners[k], corners[k + 1]))
        self.total_faces += len(corners) - 2
        if self.total_faces > self.max_faces:
            raise UserError(f"the scene has more than max_faces = {self.max_faces:,} triangles", file=str(path),
                            param="max_faces", hint="raise max_faces (memory grows with it) or decimate the scene")

    def face_vertex(self, token: str, lineno: int) -> tuple[int, int, int]:
        """(v, vt, vn) of one face token (-1 when absent). A token without negative indices means the same
        vertex wherever it appears and stays in range as the file goes on, so it is resolved once."""
        key = self.resolved.get(token)
        if key is not None:
            return key
        where = f"line {lineno}"
        fields = token.split("/")
        if len(fields) > 3 or not fields[0]:
            raise UserError(f"{where}: bad face vertex {token!r}")
        v = _resolve(fields[0], len(self.vertices), "vertex", where)
        vt = _resolve(fields[1], len(self.texcoords), "texcoord", where) if len(fields) > 1 and fields[1] else -1
        vn = _resolve(fields[2], len(self.normals), "normal", where) if len(fields) > 2 and fields[2] else -1
        if "-" not in token:
            self.resolved[token] = (v, vt, vn)
        return v, vt, vn

    def mesh_parts(self) -> list[MeshPart]:
        """One `MeshPart` per (group, material), named after the group (and the material when the group has
        several)."""
        groups_materials: dict[str, int] = {}
        for group, _ in self.parts:
            groups_materials[group] = groups_materials.get(group, 0) + 1
        v_array = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        vt_array = np.asarray(self.texcoords, dtype=np.float32).reshape(-1, 2)
        vn_array = np.asarray(self.normals, dtype=np.float32).reshape(-1, 3)
        out: list[MeshPart] = []
        for index, ((group, mat), builder) in enumerate(self.parts.items()):
            corners = np.asarray(builder.corners, dtype=np.int64).reshape(-1, 3)
            name = group if groups_materials[group] == 1 else f"{group}_{mat}"
            has_uv = bool(len(corners)) and bool((corners[:, 1] >= 0).all())
            has_normal = bool(len(corners)) and bool((corners[:, 2] >= 0).all())
            out.append(MeshPart(
                name=name,
                info={"node": group, "mesh": group, "primitive": index, "material": mat},
                positions=v_array[corners[:, 0]],
                faces=np.asarray(builder.faces, dtype=np.int64).reshape(-1, 3),
                normals=vn_array[corners[:, 2]] if has_normal else None,
                uvs=vt_array[corners[:, 1]] if has_uv else None,
            ))
        return out


def load_obj(path: str | Path, *, max_faces: int = 5_000_000, log: logging.Logger | None = None) -> list[MeshPart]:
    """Read an OBJ file into `MeshPart`s; every problem is a `UserError(file=path)` naming the line."""
    path = Path(path)
    log = log or logging.getLogger("graphflow.nodes.scene")
    data = read_scene_file(path)
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise UserError("not a text OBJ file (not UTF-8)", file=str(path)) from None
    reader = _ObjReader(path, max_faces)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        reader.read_line(lineno, raw)
    if not reader.parts:
        raise UserError("the OBJ file has no faces", file=str(path), hint="export the mesh with faces ('f' lines)")
    out = reader.mesh_parts()
    log.debug("%s: %d vertices, %d triangles, %d parts", path, len(reader.vertices), reader.total_faces, len(out))
    return out
