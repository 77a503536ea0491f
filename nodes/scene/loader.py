"""Mesh parts (from glTF, OBJ or the demo room) -> one `Scene`.

Per part: degenerate triangles dropped (counted, logged) and unused vertices
removed; normals computed (area-weighted) when missing or not finite;
texture space decided (`unwrap`: `auto` keeps TEXCOORD_0 exactly when it is
a valid atlas -- see `uv.unwrap_reason`: missing, NaN, tiled, collapsed to
zero area, a point or a line, or overlapping UVs are not -- and runs xatlas otherwise,
`always` unwraps every part, `never` keeps what is there and fails on
missing UVs); tangents kept from the file when present, finite and the UVs
were kept, else computed from the UVs. A part is the unit of texture space;
`segment.parts` documents what that means for merged instances.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from graphflow import UserError

from ..types import Scene
from .geometry import compact, degenerate_faces, vertex_normals, vertex_tangents
from .gltf import MeshPart, load_gltf
from .images import DEFAULT_MAX_PIXELS
from .obj import load_obj
from .units import UnitChoice, Units, choose_units, override_hint
from .uv import unwrap, unwrap_reason

UnwrapMode = Literal["auto", "never", "always"]
SCENE_SUFFIXES = (".gltf", ".glb", ".obj")


def _unit_rows(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norm, 1e-30)


def _finite_unit(v: np.ndarray | None) -> bool:
    if v is None or not np.isfinite(v).all():
        return False
    return bool((np.linalg.norm(v[:, :3], axis=1) > 1e-8).all())


def _source_uvs(part: MeshPart, kept: np.ndarray) -> np.ndarray:
    """The UVs at which the part's baseColor texture is sampled (`MeshPart.texture_uvs`, else TEXCOORD_0),
    for the kept vertices; NaN where the part has none."""
    lookup = part.texture_uvs if part.texture_uvs is not None else part.uvs
    if lookup is None:
        return np.full((len(kept), 2), np.nan, dtype=np.float32)
    return lookup[kept].astype(np.float32)


def clean_part(part: MeshPart, unwrap_mode: UnwrapMode, source: str, log: logging.Logger) -> MeshPart:
    """Drop degenerate faces, fill normals/UVs/tangents per the module rules. Raises if nothing remains."""
    faces = part.faces
    if len(faces):
        bad = degenerate_faces(part.positions, faces)
        if bad.any():
            log.info("%s: part '%s': dropped %d degenerate triangle(s) of %d", source, part.name, int(bad.sum()),
                     len(faces))
            part.notes.append(f"dropped {int(bad.sum())} degenerate triangles")
            faces = faces[~bad]
    if len(faces) == 0:
        return MeshPart(part.name, part.info, part.positions[:0], faces.reshape(0, 3), texture=part.texture,
                        notes=part.notes)
    kept, faces = compact(faces, len(part.positions))
    positions = part.positions[kept]
    normals = part.normals[kept] if part.normals is not None else None
    uvs = part.uvs[kept] if part.uvs is not None else None
    tangents = part.tangents[kept] if part.tangents is not None else None
    source_uvs = _source_uvs(part, kept)

    if unwrap_mode == "never":
        if uvs is None or not np.isfinite(uvs).all():
            missing = "no TEXCOORD_0" if uvs is None else "non-finite UVs"
            raise UserError(f"part '{part.name}' has {missing} and unwrap is 'never'", file=source, param="unwrap",
                            hint="set unwrap: auto to generate UVs with xatlas")
        reason = None  # kept as they are, even if tiled or overlapping
    else:
        reason = unwrap_reason(uvs, faces, positions) if unwrap_mode == "auto" else "unwrap: always"
    if reason is not None:
        log.info("%s: part '%s': new UVs with xatlas (%s)", source, part.name, reason)
        part.notes.append(f"unwrapped: {reason}")
        positions, faces, uvs, vmap = unwrap(positions, faces)
        normals = normals[vmap] if normals is not None else None
        source_uvs = source_uvs[vmap]
        tangents = None  # tangents follow the new UVs
    if not _finite_unit(normals):
        normals = vertex_normals(positions, faces)
    else:
        normals = _unit_rows(normals.astype(np.float64)).astype(np.float32)
    assert uvs is not None
    if _finite_unit(tangents):
        assert tangents is not None
        xyz = _unit_rows(tangents[:, :3].astype(np.float64))
        w = np.where(tangents[:, 3:] < 0, -1.0, 1.0)
        tangents = np.concatenate([xyz, w], axis=1).astype(np.float32)
    else:
        tangents = vertex_tangents(positions, normals, uvs, faces)
    return MeshPart(part.name, part.info, positions.astype(np.float32), faces.astype(np.int64),
                    normals.astype(np.float32), uvs.astype(np.float32), tangents.astype(np.float32), part.texture,
                    part.notes, source_uvs.astype(np.float32))


def assemble_scene(parts: Sequence[MeshPart], *, unwrap_mode: UnwrapMode = "auto", scale: float = 1.0,
                   source: str = "", log: logging.Logger | None = None, units: str = "m") -> Scene:
    """Clean every part and concatenate them into a `Scene` (parts in input order). `scale` (metres per
    file unit) multiplies the positions before anything else, so that clean-up and unwrapping see metres;
    `units` is recorded as `Scene.units`."""
    log = log or logging.getLogger("graphflow.nodes.scene")
    with np.errstate(all="ignore"):  # extreme values are caught by the finiteness check below
        return _assemble(parts, unwrap_mode, scale, source, log, units)


def _scaled(part: MeshPart, scale: float) -> MeshPart:
    """The part with its positions in metres (float64 product, one rounding to float32)."""
    if scale == 1.0:
        return part
    positions = (part.positions.astype(np.float64) * scale).astype(np.float32)
    return dataclasses.replace(part, positions=positions)


def _assemble(parts: Sequence[MeshPart], unwrap_mode: UnwrapMode, scale: float, source: str,
              log: logging.Logger, units: str) -> Scene:
    cleaned = [clean_part(_scaled(p, scale), unwrap_mode, source, log) for p in parts]
    empty = [p.name for p in cleaned if len(p.faces) == 0]
    for name in empty:
        log.info("%s: part '%s' has no triangles left after dropping degenerate ones; skipped", source, name)
    cleaned = [p for p in cleaned if len(p.faces)]
    if not cleaned:
        raise UserError("the scene has no usable triangles (all are degenerate or missing)", file=source or None,
                        hint="check the export: zero-area triangles are dropped")
    names: list[str] = []
    taken: set[str] = set()
    for p in cleaned:  # part names must be unique; later duplicates get a suffix
        name, n = p.name, 1
        while name in taken:
            name = f"{p.name}.{n:03d}"
            n += 1
        taken.add(name)
        names.append(name)
    offsets = np.cumsum([0] + [len(p.positions) for p in cleaned])
    positions = np.concatenate([p.positions for p in cleaned])
    faces = np.concatenate([p.faces + offsets[i] for i, p in enumerate(cleaned)])
    face_part = np.concatenate([np.full(len(p.faces), i, dtype=np.int64) for i, p in enumerate(cleaned)])
    if not np.isfinite(positions).all():  # only a huge `scale` or units product can get here
        raise UserError("the scene's coordinates are too large to process (values overflow float32)",
                        file=source or None, param="scale", hint="check the file's units or lower scale")
    for p in cleaned:  # not the file's fault: the loader's own normals/UVs/tangents must be finite
        for attribute in ("normals", "uvs", "tangents"):
            if not np.isfinite(getattr(p, attribute)).all():
                raise RuntimeError(f"part '{p.name}': computed {attribute} are not finite")
    infos = []
    for p in cleaned:
        info = dict(p.info)
        if p.notes:
            info["notes"] = list(p.notes)
        infos.append(info)
    def stacked(attribute: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([getattr(p, attribute) for p in cleaned]).astype(np.float32))

    return Scene(
        positions=torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float32)),
        faces=torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64)),
        normals=stacked("normals"),
        uvs=stacked("uvs"),
        tangents=stacked("tangents"),
        face_part=torch.from_numpy(face_part),
        part_names=tuple(names),
        part_info=tuple(infos),
        part_textures=tuple(p.texture for p in cleaned),
        source=source,
        source_uvs=stacked("source_uvs"),
        units=units,
        metres_per_unit=float(scale),
    )


def load_scene(path: str | Path, *, max_faces: int = 5_000_000, unwrap_mode: UnwrapMode = "auto",
               scale: float = 1.0, max_pixels: int = DEFAULT_MAX_PIXELS, texture_size: int = 2048,
               log: logging.Logger | None = None, units: Units = "m", notes: list[str] | None = None) -> Scene:
    """Load a .gltf/.glb/.obj file as a `Scene`. `source` is the file name (not the full path, so
    the same content loaded from two places gives the same bytes). `units`: the file's length unit
    (`nodes.scene.units`; `auto` judges it from the scene's size, and only when `scale` is 1).
    `notes` gets one line per thing report.json should say: the unit chosen, unreadable source textures
    (each also logged as one warning line when it matters)."""
    path = Path(path)
    log = log or logging.getLogger("graphflow.nodes.scene")
    suffix = path.suffix.lower()
    if suffix in (".gltf", ".glb"):
        parts = load_gltf(path, max_faces=max_faces, max_pixels=max_pixels, texture_size=texture_size, log=log)
    elif suffix == ".obj":
        parts = load_obj(path, max_faces=max_faces, log=log)
    else:
        raise UserError(f"unsupported scene format '{path.suffix}'", file=str(path),
                        hint=f"use one of {', '.join(SCENE_SUFFIXES)}")
    choice = scene_units(parts, units, scale)
    if choice.guessed:
        log.warning("%s: %s; %s", path.name, choice.reason, override_hint(choice))
    try:
        scene = assemble_scene(parts, unwrap_mode=unwrap_mode, scale=choice.metres_per_unit * scale,
                               source=path.name, log=log, units=choice.unit)
    except UserError as exc:
        exc.file = str(path)  # messages name the full path; Scene.source keeps only the file name
        raise
    unreadable = unreadable_summary(scene)
    if unreadable:
        log.warning("%s: %s", path.name, unreadable)
    if notes is not None:
        notes.append(choice.note())
        notes.extend([unreadable] if unreadable else [])
    return scene


def scene_units(parts: Sequence[MeshPart], units: Units, scale: float = 1.0) -> UnitChoice:
    """The unit to read `parts` in (`choose_units`); an explicit `scale` other than 1 is the user's own
    conversion, so `auto` then keeps the file's unit instead of guessing on top of it."""
    if units == "auto" and scale != 1.0:
        return UnitChoice("m", 1.0, False, f"auto with scale {scale:g}: the file's unit, scaled")
    return choose_units(units, [p.positions for p in parts])


def unreadable_parts(scene: Scene) -> dict[str, dict[str, str]]:
    """Part name -> the record of its baseColor image that could not be read
    (`gltf_materials.MaterialReader.unreadable`)."""
    return {name: info["unreadable_texture"] for name, info in zip(scene.part_names, scene.part_info, strict=True)
            if isinstance(info.get("unreadable_texture"), dict)}


def unreadable_summary(scene: Scene) -> str | None:
    """One line naming the source textures that could not be read, or None when all were."""
    records = unreadable_parts(scene)
    if not records:
        return None
    files: dict[str, dict[str, str]] = {}
    for record in records.values():
        files.setdefault(record["file"], record)
    listed = "; ".join(f"{f} ({r['extension']}: {r['reason']})" for f, r in files.items())
    return (f"{len(files)} source texture(s) of {len(records)} part(s) cannot be read: {listed}. Graphs that "
            "texture the scene replace them; a node that reads source textures (texture.from_scene) will stop")


def require_part_textures(scene: Scene, parts: Sequence[int], node: str | None = None) -> None:
    """Raise `UserError` (exit 2) when one of `parts` (indices) has a source texture that could not be read:
    what a node that reads `Scene.part_textures` calls first, so that it never bakes a blank texture."""
    for part in parts:
        info = scene.part_info[part] if part < len(scene.part_info) else {}
        record = info.get("unreadable_texture")
        if isinstance(record, dict):
            raise UserError(f"part '{scene.part_names[part]}' needs its baseColor texture {record['image']}, "
                            f"which cannot be read ({record['extension']}: {record['reason']})",
                            node=node, file=record["file"],
                            hint="convert the image to PNG or JPEG (e.g. ktx extract / toktx --decode) and "
                                 "point the glTF at it, or restore the missing file")
