"""Scene parts -> named instances (`segment.parts`).

Grouping (`by`):
- `node`, `mesh`, `material`: parts sharing the glTF node name / mesh name /
  material name form one instance named by it;
- `primitive`: one instance per part, named by the part name;
- `component`: connected components of each part (triangles sharing a
  vertex position; vertices are split at UV seams, so positions are welded
  exactly first), named `<part>_<k>` with k counting from 0 in order of each
  component's first face.

Then `merge` (new name -> names/globs of groups, first rule wins for a
group), then `rename` (old name or glob -> new name; two groups renamed to
the same name are merged). Every rule entry must match at least one group,
otherwise `UserError(param=..., naming the entry)`. Groups with fewer than
`min_faces` triangles are dropped (logged). Instances come out in order of
their first face in the scene (i.e. part order), which is deterministic.

Texture space: UVs are decided per part by `io.load_scene` (each part's
TEXCOORD_0 is kept only if it is a valid non-overlapping atlas, else the
part is unwrapped). An instance merged from several parts therefore may
have parts whose atlases overlap each other; segment does not change the
geometry (its output is only instances), so it checks the merged UVs and
logs a warning naming the instance when they overlap. The fix is to merge
in the source file or to use `by: material`/`by: node` groupings whose parts
were authored in one atlas.
"""
from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from graphflow import Keyed, UserError

from ..types import MATERIAL_CLASSES, Instance, Scene
from .uv import OVERLAP_TOLERANCE, overlap_fraction

GroupBy = Literal["node", "mesh", "primitive", "material", "component"]

# Words in material/node names -> material class, checked in this order (first hit wins).
MATERIAL_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leather", ("leather", "suede", "hide")),
    ("fabric", ("fabric", "velvet", "cloth", "textile", "cotton", "linen", "wool", "upholster", "cushion", "carpet",
                "rug", "curtain", "felt", "weave", "sofa", "pillow")),
    ("wood", ("wood", "oak", "walnut", "pine", "timber", "plank", "parquet", "maple", "birch", "teak", "veneer",
              "mahogany", "bamboo")),
    ("metal", ("metal", "steel", "iron", "chrome", "alumin", "brass", "copper", "gold", "silver", "bronze", "zinc")),
    ("glass", ("glass", "mirror", "window", "crystal")),
    ("ceramic", ("ceramic", "porcelain", "tile", "clay", "terracotta", "enamel")),
    ("stone", ("stone", "marble", "granite", "concrete", "brick", "slate", "cement")),
    ("paper", ("paper", "label", "cardboard", "book", "wallpaper", "poster")),
    ("plastic", ("plastic", "rubber", "vinyl", "acrylic", "nylon", "polymer")),
    ("paint", ("paint", "plaster", "lacquer", "wall", "ceiling")),
)


def guess_material(*names: str) -> str:
    """Material class from words in names (material name first, then node name); 'generic' if none."""
    for name in names:
        words = re.sub(r"[^a-z]+", " ", (name or "").lower())
        if not words.strip():
            continue
        for material_class, stems in MATERIAL_WORDS:
            if any(stem in words for stem in stems):
                return material_class
    return "generic"


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _matches(pattern: str, names: Sequence[str]) -> list[str]:
    if _is_glob(pattern):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in names if n == pattern]


def component_labels(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Connected component per face (faces sharing a welded vertex position), numbered by first face."""
    if len(faces) == 0:
        return np.zeros(0, dtype=np.int64)
    _, welded = np.unique(positions, axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    f = welded[faces]
    n = int(welded.max()) + 1
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, vertex_label = connected_components(graph, directed=False)
    face_label = vertex_label[f[:, 0]]
    # Renumber by first appearance so labels do not depend on scipy's numbering.
    _, first = np.unique(face_label, return_index=True)
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    lookup = np.full(int(face_label.max()) + 1, -1, dtype=np.int64)
    lookup[np.unique(face_label)] = renumber
    return lookup[face_label]


def face_groups(scene: Scene, by: GroupBy) -> tuple[np.ndarray, list[str]]:
    """(group index per face, group names in order of first face)."""
    face_part = scene.face_part.numpy()
    if by == "component":
        faces = scene.faces.numpy()
        positions = scene.positions.numpy()
        group = np.empty(len(faces), dtype=np.int64)
        names: list[str] = []
        for part_index, part_name in enumerate(scene.part_names):
            mask = face_part == part_index
            comp = component_labels(positions, faces[mask])
            group[mask] = comp + len(names)
            names += [f"{part_name}_{k}" for k in range(int(comp.max()) + 1 if len(comp) else 0)]
        return group, names
    field = {"node": "node", "mesh": "mesh", "material": "material"}.get(by)
    part_keys = [
        scene.part_names[i] if field is None else str(scene.part_info[i].get(field, scene.part_names[i]))
        for i in range(len(scene.part_names))
    ]
    names = []
    part_group = np.empty(len(part_keys), dtype=np.int64)
    for i, key in enumerate(part_keys):  # parts are stored in face order, so this is first-face order
        if key not in names:
            names.append(key)
        part_group[i] = names.index(key)
    return part_group[face_part], names


def _substitute(pattern: str, new: str, name: str) -> str:
    """`*` in a rename target stands for what the pattern's `*`s matched, in order
    (`SheenChair_*` -> `chair_*` renames `SheenChair_wood` to `chair_wood`); with a `[...]`
    class in the pattern, `*` in the target stands for the whole old name."""
    if "*" not in new:
        return new
    if "[" in pattern:
        return new.replace("*", name)
    regex = "".join("(.*)" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    match = re.fullmatch(regex, name)
    if match is None:  # cannot happen for a pattern that matched; keep the name
        return name
    pieces = iter(match.groups())
    return "".join(next(pieces, name) if ch == "*" else ch for ch in new)


def _apply_rules(names: list[str], merge: Mapping[str, Sequence[str]], rename: Mapping[str, str]) -> list[str]:
    """Final instance name of each group."""
    final = list(names)
    claimed = [False] * len(names)
    for new_name, patterns in merge.items():
        if isinstance(patterns, str):
            patterns = [patterns]
        hit = False
        for pattern in patterns:
            matched = _matches(pattern, names)
            if not matched:
                raise UserError(
                    f"merge entry '{new_name}': '{pattern}' matches no group", param="merge",
                    hint=f"groups are: {', '.join(names)}",
                )
            for name in matched:
                i = names.index(name)
                if not claimed[i]:
                    final[i], claimed[i], hit = new_name, True, True
        if not hit:
            raise UserError(f"merge entry '{new_name}': every group it names is already merged by an earlier entry",
                            param="merge", hint="each group can be merged into one instance only")
    current = sorted(set(final), key=final.index)
    exact = {old: new for old, new in rename.items() if not _is_glob(old)}
    for old, new in rename.items():
        if not _matches(old, current):
            raise UserError(f"rename entry '{old}' matches no instance", param="rename",
                            hint=f"instances are: {', '.join(current)}")
    renamed = []
    for name in final:
        if name in exact:
            renamed.append(exact[name])
            continue
        for old, new in rename.items():
            if _is_glob(old) and fnmatch.fnmatchcase(name, old):
                renamed.append(_substitute(old, new, name))
                break
        else:
            renamed.append(name)
    return renamed


def segment_scene(scene: Scene, *, by: GroupBy = "node", rename: Mapping[str, str] | None = None,
                  merge: Mapping[str, Sequence[str]] | None = None, min_faces: int = 1,
                  log: logging.Logger | None = None) -> Keyed[Instance]:
    """Group the scene's faces into instances (rules in the module docstring)."""
    log = log or logging.getLogger("graphflow.nodes.scene")
    group, names = face_groups(scene, by)
    final = _apply_rules(names, merge or {}, rename or {})
    for name in final:
        if not name or not isinstance(name, str):
            raise UserError(f"instance name {name!r} is empty", param="rename", hint="give every instance a name")
    instance_names = sorted(set(final), key=final.index)
    face_instance = np.asarray([instance_names.index(n) for n in final], dtype=np.int64)[group]
    faces = scene.faces
    positions = scene.positions
    face_part = scene.face_part.numpy()
    out: dict[str, Instance] = {}
    for k, name in enumerate(instance_names):
        mask = face_instance == k
        count = int(mask.sum())
        if count < min_faces:
            log.info("segment: instance '%s' has %d faces (< min_faces %d); dropped", name, count, min_faces)
            continue
        used = torch.unique(faces[torch.from_numpy(mask)].reshape(-1))
        pts = positions[used]
        bbox = torch.stack([pts.min(dim=0).values, pts.max(dim=0).values]).to(torch.float32)
        parts_here, part_counts = np.unique(face_part[mask], return_counts=True)
        main_part = int(parts_here[np.argmax(part_counts)])
        info = scene.part_info[main_part]
        material = guess_material(str(info.get("material", "")), name, str(info.get("node", "")))
        if len(parts_here) > 1:
            sub = faces[torch.from_numpy(mask)].numpy()
            overlap = overlap_fraction(scene.uvs.numpy(), sub)
            if overlap > OVERLAP_TOLERANCE:
                log.warning("segment: instance '%s' merges %d parts whose UVs overlap (%.1f%% of texels); they will "
                            "share texels", name, len(parts_here), 100 * overlap)
        out[name] = Instance(name=name, face_mask=torch.from_numpy(mask.copy()), bbox=bbox, material=material)
    if not out:
        raise UserError(f"no instance has at least min_faces = {min_faces} faces", param="min_faces",
                        hint="lower min_faces")
    assert all(inst.material in MATERIAL_CLASSES for inst in out.values())
    return Keyed(out)
