"""The acceptance scene of issue 14: a small room of parts that real scenes break on, built with pygltflib.

`build_odd_scene(folder)` writes `odd_scene.glb` (and, with `draco=True`,
`odd_scene_draco.glb`: the same geometry, every primitive Draco-compressed
with DracoPy and the extension required). Nodes (= instances under
`segment.parts by: node`):

| node | what it tests |
|---|---|
| `floor` | a plain 4 m quad with valid UVs and a TEXCOORD_1 (lightmap) set |
| `lamp_shade`, `lamp_bulb` | a closed box shell and a small box inside it: a part no outside view sees |
| `crate` | TEXCOORD_0 all zeros (must be unwrapped at load) |
| `poster` | a baseColor texture with KHR_texture_transform (the spec's example: the lower-left quadrant, rotated) |
| `rug` | a baseColor texture read through TEXCOORD_1 |
| `stool_left`, `stool_right` | one mesh used by two nodes (instancing) |
| `table` | one mesh of two primitives (top and legs), KHR_materials_variants on the top |
| `panel` | a sparse POSITION accessor (without it the panel is degenerate) |

The poster's texture is 16x16 texels in four quadrants: red, green (top),
blue, white (bottom); its transform maps every UV into the blue quadrant,
so a correct lookup of the poster's baseColor is blue (a lookup without the
transform sees all four colours; one that rotates the wrong way, green). No binary asset is committed:
tests build the files in a tmp dir. Run as a script to write the files and a
references file for a full pipeline run:
`python tests/scene/odd_scene.py OUT_DIR` (then
`graphflow run graphs/texture_scene.yaml --input scene=OUT_DIR/odd_scene.glb
--input references=OUT_DIR/refs.yaml`).
"""
from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib as g
from PIL import Image

ODD_SCENE_NODES = ("floor", "lamp_shade", "lamp_bulb", "crate", "poster", "rug", "stool_left", "stool_right",
                   "table", "panel")
POSTER_TRANSFORM = {"offset": [0.0, 1.0], "rotation": math.pi / 2, "scale": [0.5, 0.5]}
POSTER_QUADRANTS = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
POSTER_TEXELS = POSTER_QUADRANTS.repeat(8, axis=0).repeat(8, axis=1)  # 16x16, quadrants of 8x8 texels
RUG_TEXELS = np.array([[[200, 180, 40], [200, 180, 40]], [[200, 180, 40], [200, 180, 40]]], dtype=np.uint8)
PANEL_SPARSE = {2: [1.0, 1.0, 0.0], 3: [0.0, 1.0, 0.0]}  # vertex -> position substituted by the sparse accessor
DRACO = "KHR_draco_mesh_compression"
VARIANTS = "KHR_materials_variants"
TRANSFORM = "KHR_texture_transform"


@dataclass
class Mesh:
    """One primitive's arrays (object space)."""

    positions: np.ndarray
    indices: np.ndarray
    uvs: np.ndarray | None = None
    normals: np.ndarray | None = None
    uvs1: np.ndarray | None = None
    material: int | None = None
    sparse: dict[int, list[float]] = field(default_factory=dict)  # POSITION substitutions
    extensions: dict[str, Any] = field(default_factory=dict)


def box(size: tuple[float, float, float]) -> Mesh:
    """A box centred at the origin: 24 vertices, outward normals, each face its own cell of a 3x2 UV grid."""
    half = np.asarray(size, dtype=np.float64) / 2
    positions, normals, uvs, indices = [], [], [], []
    for face, (axis, sign) in enumerate((a, s) for a in range(3) for s in (1.0, -1.0)):
        n = np.zeros(3)
        n[axis] = sign
        t = np.zeros(3)
        t[(axis + 1) % 3] = 1.0
        b = np.cross(n, t)
        cell = np.array([face % 3 / 3, face // 3 / 2])
        for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            positions.append((n + du * t + dv * b) * half)
            normals.append(n)
            uvs.append(cell + [0.02 + (du + 1) / 2 * (1 / 3 - 0.04), 0.02 + (1 - dv) / 2 * (0.5 - 0.04)])
        base = 4 * face
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return Mesh(np.array(positions, np.float32), np.array(indices, np.uint32), np.array(uvs, np.float32),
                np.array(normals, np.float32))


def quad(width: float, height: float, facing_up: bool = False) -> Mesh:
    """A `width` x `height` rectangle at the origin facing +Z (or +Y), UVs covering [0, 1]²."""
    if facing_up:
        positions = [[0, 0, height], [width, 0, height], [width, 0, 0], [0, 0, 0]]
        normal = [0, 1, 0]
    else:
        positions = [[0, 0, 0], [width, 0, 0], [width, height, 0], [0, height, 0]]
        normal = [0, 0, 1]
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    return Mesh(np.array(positions, np.float32), np.array([0, 1, 2, 0, 2, 3], np.uint32), uvs,
                np.array([normal] * 4, np.float32))


class _Writer:
    """Accumulates one binary buffer, its bufferViews and accessors."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[g.BufferView] = []
        self.accessors: list[g.Accessor] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.views.append(g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target))
        self.blob.extend(data)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray | None, ctype: int, atype: str, count: int | None = None,
                 target: int | None = g.ARRAY_BUFFER, bounds: np.ndarray | None = None) -> int:
        acc = g.Accessor(componentType=ctype, count=count if array is None else len(array), type=atype)
        if array is not None:
            acc.bufferView = self.view(np.ascontiguousarray(array).tobytes(), target)
        else:
            acc.byteOffset = None  # no data here (Draco): a byteOffset without a bufferView is invalid
        if bounds is not None:
            acc.min, acc.max = bounds.min(axis=0).tolist(), bounds.max(axis=0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def primitive(self, mesh: Mesh, draco: bool) -> g.Primitive:
        final = mesh.positions.copy()
        for index, value in mesh.sparse.items():
            final[index] = value
        if draco:
            return self._draco_primitive(mesh, final)
        attributes = g.Attributes(POSITION=self.accessor(mesh.positions, g.FLOAT, g.VEC3, bounds=final))
        if mesh.sparse:
            self._sparse(self.accessors[attributes.POSITION], mesh.sparse)
        if mesh.normals is not None:
            attributes.NORMAL = self.accessor(mesh.normals, g.FLOAT, g.VEC3)
        if mesh.uvs is not None:
            attributes.TEXCOORD_0 = self.accessor(mesh.uvs, g.FLOAT, g.VEC2)
        if mesh.uvs1 is not None:
            attributes.TEXCOORD_1 = self.accessor(mesh.uvs1, g.FLOAT, g.VEC2)
        indices = self.accessor(mesh.indices, g.UNSIGNED_INT, g.SCALAR, target=g.ELEMENT_ARRAY_BUFFER)
        return g.Primitive(attributes=attributes, indices=indices, material=mesh.material,
                           extensions=dict(mesh.extensions))

    def _sparse(self, acc: g.Accessor, substitutions: dict[int, list[float]]) -> None:
        keys = sorted(substitutions)
        indices = self.view(np.array(keys, np.uint16).tobytes())
        values = self.view(np.array([substitutions[k] for k in keys], np.float32).tobytes())
        acc.sparse = g.Sparse(count=len(keys), indices=g.AccessorSparseIndices(bufferView=indices,
                                                                                componentType=g.UNSIGNED_SHORT),
                              values=g.AccessorSparseValues(bufferView=values))

    def _draco_primitive(self, mesh: Mesh, positions: np.ndarray) -> g.Primitive:
        import DracoPy

        generic = {} if mesh.uvs1 is None else {"TEXCOORD_1": mesh.uvs1.astype(np.float64)}
        data = DracoPy.encode(positions, mesh.indices.reshape(-1, 3), quantization_bits=16, preserve_order=True,
                              tex_coord=None if mesh.uvs is None else mesh.uvs.astype(np.float64),
                              normals=None if mesh.normals is None else mesh.normals.astype(np.float64),
                              generic_attributes=generic or None)
        decoded = DracoPy.decode(data)
        ids = {a["attribute_type"]: a["unique_id"] for a in decoded.attributes}  # 0 position, 1 normal, 3 texcoord
        named = {a["name"]: a["unique_id"] for a in decoded.attributes if a["name"]}
        count = len(decoded.points)
        attributes = g.Attributes(POSITION=self.accessor(None, g.FLOAT, g.VEC3, count=count, bounds=positions))
        extension: dict[str, Any] = {"POSITION": ids[0]}
        if mesh.normals is not None:
            attributes.NORMAL = self.accessor(None, g.FLOAT, g.VEC3, count=count)
            extension["NORMAL"] = ids[1]
        if mesh.uvs is not None:
            attributes.TEXCOORD_0 = self.accessor(None, g.FLOAT, g.VEC2, count=count)
            extension["TEXCOORD_0"] = ids[3]
        if mesh.uvs1 is not None:
            attributes.TEXCOORD_1 = self.accessor(None, g.FLOAT, g.VEC2, count=count)
            extension["TEXCOORD_1"] = named["TEXCOORD_1"]
        indices = self.accessor(None, g.UNSIGNED_INT, g.SCALAR, count=mesh.indices.size)
        extensions = dict(mesh.extensions)
        extensions[DRACO] = {"bufferView": self.view(data), "attributes": extension}
        return g.Primitive(attributes=attributes, indices=indices, material=mesh.material, extensions=extensions)


def _png(texels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(texels, "RGB").save(out, format="PNG")
    return out.getvalue()


def _materials(writer: _Writer) -> tuple[list[g.Material], list[g.Texture], list[g.Image], list[g.Sampler]]:
    """Materials by index: 0 oak_floor, 1 linen_shade, 2 glass_bulb, 3 pine_crate, 4 poster_paper (texture
    transform), 5 wool_rug (texCoord 1), 6 birch_stool, 7 walnut_top, 8 steel_legs, 9 walnut_dark (variant),
    10 painted_panel."""
    images = [g.Image(bufferView=writer.view(_png(POSTER_TEXELS)), mimeType="image/png"),
              g.Image(bufferView=writer.view(_png(RUG_TEXELS)), mimeType="image/png")]
    sampler = g.Sampler(magFilter=g.NEAREST, minFilter=g.NEAREST)
    textures = [g.Texture(source=0, sampler=0), g.Texture(source=1, sampler=0)]
    names = ["oak_floor", "linen_shade", "glass_bulb", "pine_crate", "poster_paper", "wool_rug", "birch_stool",
             "walnut_top", "steel_legs", "walnut_dark", "painted_panel"]
    materials = [g.Material(name=n, pbrMetallicRoughness=g.PbrMetallicRoughness(metallicFactor=0.0))
                 for n in names]
    poster = materials[4].pbrMetallicRoughness
    poster.baseColorTexture = g.TextureInfo(index=0, extensions={TRANSFORM: dict(POSTER_TRANSFORM)})
    materials[5].pbrMetallicRoughness.baseColorTexture = g.TextureInfo(index=1, texCoord=1)
    return materials, textures, images, [sampler]


def _scene_meshes() -> list[tuple[str, list[Mesh]]]:
    floor = quad(4.0, 4.0, facing_up=True)
    floor.uvs1 = (floor.uvs * 0.5).astype(np.float32)
    rug = quad(1.5, 1.0, facing_up=True)
    rug.uvs1 = rug.uvs[:, ::-1].copy()  # a different set: the baseColor reads this one
    crate = box((0.5, 0.5, 0.5))
    crate.uvs = np.zeros_like(crate.uvs)
    panel = quad(1.0, 1.0)
    panel.positions[2:] = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # degenerate until the sparse values apply
    panel.sparse = dict(PANEL_SPARSE)
    top = box((1.2, 0.05, 0.7))
    top.extensions = {VARIANTS: {"mappings": [{"material": 9, "variants": [0]}]}}
    top.uvs = (top.uvs * [0.5, 1.0]).astype(np.float32)  # the two primitives share one atlas: left / right half
    legs = box((0.05, 0.7, 0.05))
    legs.uvs = (legs.uvs * [0.5, 1.0] + [0.5, 0.0]).astype(np.float32)
    meshes = [("floor", [floor], 0), ("shade", [box((0.4, 0.4, 0.4))], 1), ("bulb", [box((0.08, 0.12, 0.08))], 2),
              ("crate", [crate], 3), ("poster", [quad(0.7, 1.0)], 4), ("rug", [rug], 5),
              ("stool", [box((0.35, 0.45, 0.35))], 6), ("table", [top, legs], 7), ("panel", [panel], 10)]
    out = []
    for name, prims, material in meshes:
        for k, prim in enumerate(prims):
            prim.material = material + k
        out.append((name, prims))
    return out


NODES: list[dict[str, Any]] = [
    {"name": "floor", "mesh": 0, "translation": [-2.0, 0.0, 2.0]},
    {"name": "lamp_shade", "mesh": 1, "translation": [1.2, 0.9, -1.2]},
    {"name": "lamp_bulb", "mesh": 2, "translation": [1.2, 0.9, -1.2]},
    {"name": "crate", "mesh": 3, "translation": [-1.3, 0.25, -1.3]},
    {"name": "poster", "mesh": 4, "translation": [-0.35, 0.6, -1.99]},
    {"name": "rug", "mesh": 5, "translation": [-0.75, 0.005, 1.0]},
    {"name": "stool_left", "mesh": 6, "translation": [-0.8, 0.225, 0.0]},
    {"name": "stool_right", "mesh": 6, "translation": [0.8, 0.225, 0.0], "rotation": [0, 0.3826834, 0, 0.9238795]},
    {"name": "table", "mesh": 7, "translation": [0.0, 0.7, -0.5]},
    {"name": "panel", "mesh": 8, "translation": [1.99, 0.5, 0.5], "rotation": [0, -0.7071068, 0, 0.7071068]},
]


def odd_scene_gltf(draco: bool = False) -> g.GLTF2:
    """The scene as a pygltflib document with its binary blob set."""
    writer = _Writer()
    materials, textures, images, samplers = _materials(writer)
    meshes = [g.Mesh(name=name, primitives=[writer.primitive(p, draco) for p in prims])
              for name, prims in _scene_meshes()]
    used = [TRANSFORM, VARIANTS] + ([DRACO] if draco else [])
    doc = g.GLTF2(
        asset=g.Asset(version="2.0", generator="graphflow tests/scene/odd_scene.py"),
        scene=0, scenes=[g.Scene(nodes=list(range(len(NODES))))],
        nodes=[g.Node(**{k: v for k, v in n.items()}) for n in NODES],
        meshes=meshes, materials=materials, textures=textures, images=images, samplers=samplers,
        accessors=writer.accessors, bufferViews=writer.views, buffers=[g.Buffer(byteLength=len(writer.blob))],
        extensionsUsed=used, extensionsRequired=[DRACO] if draco else [],
        extensions={VARIANTS: {"variants": [{"name": "dark walnut"}]}},
    )
    doc.set_binary_blob(bytes(writer.blob))
    return doc


def build_odd_scene(folder: str | Path, *, draco: bool = False) -> Path:
    """Write `odd_scene.glb` (or `odd_scene_draco.glb`) into `folder`; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("odd_scene_draco.glb" if draco else "odd_scene.glb")
    odd_scene_gltf(draco).save_binary(str(path))
    return path


def write_references(folder: str | Path) -> Path:
    """A references file binding every instance: a swatch per material family and a default."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(14)
    for name, colour in (("wood", (150, 100, 55)), ("fabric", (160, 40, 40)), ("paint", (90, 120, 160))):
        noise = rng.integers(-25, 26, size=(64, 64, 1))
        texels = np.clip(np.array(colour)[None, None] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(texels, "RGB").save(folder / f"{name}.png")
    path = folder / "refs.yaml"
    path.write_text(
        "instances:\n"
        "  floor: {images: wood.png, material: wood}\n"
        "  \"stool_*\": {images: wood.png, material: wood}\n"
        "  table: {images: wood.png, material: wood}\n"
        "  \"lamp_*\": {images: fabric.png, material: fabric}\n"
        "  rug: {images: fabric.png, material: fabric}\n"
        "default: {images: paint.png, material: paint}\n")
    return path


def build_big_mesh(folder: str | Path, side: int = 260) -> Path:
    """A `side` x `side` vertex grid (260² = 67,600 vertices > 65,535: uint32 indices) with grid UVs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)
    x, z = np.meshgrid(t, t)
    positions = np.stack([x.ravel(), np.zeros(side * side, np.float32), z.ravel()], axis=1)
    uvs = np.stack([x.ravel(), z.ravel()], axis=1)
    i = np.arange(side - 1)
    corner = (i[None, :] + side * i[:, None]).ravel()
    quads = np.stack([corner, corner + side, corner + side + 1, corner, corner + side + 1, corner + 1], axis=1)
    writer = _Writer()
    prim = writer.primitive(Mesh(positions, quads.astype(np.uint32).ravel(), uvs), draco=False)
    doc = g.GLTF2(asset=g.Asset(version="2.0"), scene=0, scenes=[g.Scene(nodes=[0])],
                  nodes=[g.Node(name="grid", mesh=0)], meshes=[g.Mesh(name="grid", primitives=[prim])],
                  accessors=writer.accessors, bufferViews=writer.views,
                  buffers=[g.Buffer(byteLength=len(writer.blob))])
    doc.set_binary_blob(bytes(writer.blob))
    path = folder / "big_grid.glb"
    doc.save_binary(str(path))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "odd_scene")
    for written in (build_odd_scene(out), build_odd_scene(out, draco=True), write_references(out)):
        print(written)
