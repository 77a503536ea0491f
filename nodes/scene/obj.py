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
from pathlib import Path

import numpy as np

from graphflow import UserError

from .gltf import MeshPart


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


def load_obj(path: str | Path, *, max_faces: int = 5_000_000, log: logging.Logger | None = None) -> list[MeshPart]:
    """Read an OBJ file into `MeshPart`s; every problem is a `UserError(file=path)` naming the line."""
    path = Path(path)
    log = log or logging.getLogger("graphflow.nodes.scene")
    try:
        text = path.read_bytes().decode("utf-8", errors="strict")
    except FileNotFoundError:
        raise UserError("the scene file does not exist", file=str(path), hint="check the path") from None
    except UnicodeDecodeError:
        raise UserError("not a text OBJ file (not UTF-8)", file=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read the scene file ({exc.strerror or exc})", file=str(path)) from None

    vertices: list[tuple[float, float, float]] = []
    texcoords: list[tuple[float, float]] = []
    normals: list[tuple[float, float, float]] = []
    parts: dict[tuple[str, str], _PartBuilder] = {}
    object_name, group_name, material = "", "", "default"
    total_faces = 0

    def floats(tokens: list[str], n: int, lineno: int, what: str) -> list[float]:
        if len(tokens) < n:
            raise UserError(f"line {lineno}: '{what}' needs {n} numbers", file=str(path), line=lineno)
        try:
            values = [float(t) for t in tokens[:n]]
        except ValueError:
            raise UserError(f"line {lineno}: '{what}' has a value that is not a number", file=str(path),
                            line=lineno) from None
        if not all(np.isfinite(values)):
            raise UserError(f"line {lineno}: '{what}' has a NaN or infinite value", file=str(path), line=lineno)
        return values

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        keyword, *tokens = line.split()
        if keyword == "v":
            x, y, z = floats(tokens, 3, lineno, "v")
            vertices.append((x, y, z))
        elif keyword == "vt":
            u, v = floats(tokens, 2, lineno, "vt") if len(tokens) >= 2 else (*floats(tokens, 1, lineno, "vt"), 0.0)
            texcoords.append((u, 1.0 - v))
        elif keyword == "vn":
            x, y, z = floats(tokens, 3, lineno, "vn")
            normals.append((x, y, z))
        elif keyword == "o":
            object_name = " ".join(tokens)
        elif keyword == "g":
            group_name = " ".join(tokens)
        elif keyword == "usemtl":
            material = " ".join(tokens) or "default"
        elif keyword == "f":
            if len(tokens) < 3:
                raise UserError(f"line {lineno}: a face needs at least 3 vertices", file=str(path), line=lineno)
            group = group_name or object_name or "default"
            builder = parts.get((group, material))
            if builder is None:
                builder = parts[(group, material)] = _PartBuilder(group, material)
            where = f"line {lineno}"
            corners = []
            try:
                for token in tokens:
                    fields = token.split("/")
                    if len(fields) > 3 or not fields[0]:
                        raise UserError(f"{where}: bad face vertex {token!r}")
                    v = _resolve(fields[0], len(vertices), "vertex", where)
                    vt = _resolve(fields[1], len(texcoords), "texcoord", where) if len(fields) > 1 and fields[1] else -1
                    vn = _resolve(fields[2], len(normals), "normal", where) if len(fields) > 2 and fields[2] else -1
                    corners.append(builder.corner((v, vt, vn)))
            except UserError as exc:
                raise UserError(exc.message, file=str(path), line=lineno) from None
            for k in range(1, len(corners) - 1):
                builder.faces.append((corners[0], corners[k], corners[k + 1]))
            total_faces += len(corners) - 2
            if total_faces > max_faces:
                raise UserError(f"the scene has more than max_faces = {max_faces:,} triangles", file=str(path),
                                param="max_faces", hint="raise max_faces (memory grows with it) or decimate the scene")
    if not parts:
        raise UserError("the OBJ file has no faces", file=str(path), hint="export the mesh with faces ('f' lines)")

    groups_materials: dict[str, int] = {}
    for group, _ in parts:
        groups_materials[group] = groups_materials.get(group, 0) + 1
    v_array = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    vt_array = np.asarray(texcoords, dtype=np.float32).reshape(-1, 2)
    vn_array = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
    out: list[MeshPart] = []
    for index, ((group, mat), builder) in enumerate(parts.items()):
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
    log.debug("%s: %d vertices, %d triangles, %d parts", path, len(vertices), total_faces, len(out))
    return out
