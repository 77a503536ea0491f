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

import itertools
import json
import logging
import math
import struct
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphflow import UserError

from .gltf_materials import MaterialReader
from .gltf_nodes import SceneGraphReader
from .gltf_primitives import PrimitiveArrays, primitive_arrays
from .gltf_schema import GLB_MAGIC, MODE_NAMES
from .images import DEFAULT_MAX_PIXELS
from .uv import apply_texture_transform



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



class _Reader(SceneGraphReader, MaterialReader):
    """One load: the container, buffers and accessors (`gltf_reader`), the node hierarchy (`gltf_nodes`)
    and the materials (`gltf_materials`) of a file."""




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
        arrays = primitive_arrays(reader, prim, raw_prim.get("attributes") or {}, label, max_faces,
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


def _world_part(reader: _Reader, arrays: PrimitiveArrays, world: np.ndarray, node_index: int, label: str, name: str,
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
