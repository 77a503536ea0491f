"""The editable material graph: each instance's PBR maps as a MaterialX 1.39 `standard_surface`.

One graph description (`material_graph`) is written twice: as `asset.mtlx` (here, inside a
`nodegraph` per instance) and as flat `ND_*` shader prims on the USD materials (`usd_writer`),
so both carry the same nodes, inputs and PNGs.

Mapping from the glTF metallic-roughness inputs onto `standard_surface` (why this shader:
it is the one MaterialX surface that Houdini/Karma, Omniverse, Arnold, Maya, three.js's
MaterialXLoader and USD's hdStorm all read):

| glTF | PNG channel | MaterialX node | standard_surface input |
|---|---|---|---|
| baseColorTexture | `*_baseColor.png` RGB (sRGB) | `image` color3, `srgb_texture` | `base_color` (`base` = 1) |
| metallicRoughness G | `*_occlusionRoughnessMetallic.png` G | `image` vector3 -> `extract` 1 | `specular_roughness` |
| metallicRoughness B | same PNG, B | `extract` 2 | `metalness` |
| normalTexture | `*_normal.png` (tangent space, +Y) | `image` vector3 -> `normalmap` | `normal` |
| occlusionTexture R | ORM PNG, R | `extract` 0 -> graph output `occlusion_out` | none (no AO input) |
| (dielectric F0 0.04) | | | `specular` = 1, `specular_IOR` = 1.5 |
| KHR_materials_sheen (fabric) | | | `sheen` = 1, `sheen_color`, `sheen_roughness` = 0.5 |

Data maps are `vector3`/`float` image nodes, which MaterialX never colour-converts (the
"raw" of UsdUVTexture); only the base colour carries `colorspace="srgb_texture"`. Texture
coordinates are MaterialX's (and USD's): v up, so a client that loads the glTF flips v as
usual (Blender, USD importers do). Filenames are relative to the document.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import MaterialX as mx

from graphflow import UserError

from nodes.types import Instance, PBRMaps

from .gltf_writer import MaterialPngs, material_pngs, sheen_colour
from .names import identifiers

MTLX_VERSION = "1.39"
SURFACE_NODEDEF = "ND_standard_surface_surfaceshader"
TEXTURE_SUFFIXES = {"base_color": "baseColor", "orm": "occlusionRoughnessMetallic", "normal": "normal",
                    "height": "height"}


@dataclass(frozen=True)
class ExportMaterial:
    """One instance's material as every export sees it: original name, identifier, the PNGs
    (the glTF's own bytes), their pixel size and the fabric sheen colour (None: no sheen)."""

    name: str
    ident: str
    pngs: MaterialPngs
    size: tuple[int, int]  # (height, width) of the maps
    sheen: list[float] | None

    def texture_name(self, slot: str) -> str:
        """The PNG file name of `slot` (base_color, orm, normal)."""
        return f"{self.ident}_{TEXTURE_SUFFIXES[slot]}.png"

    def png(self, slot: str) -> bytes:
        png = {"base_color": self.pngs.base_color, "orm": self.pngs.orm, "normal": self.pngs.normal,
               "height": self.pngs.height}[slot]
        assert png is not None, slot
        return png

    def slots(self) -> list[str]:
        """The texture slots this material has (height only where its maps have relief)."""
        return [slot for slot in TEXTURE_SUFFIXES if slot != "height" or self.pngs.height is not None]


@dataclass(frozen=True)
class Ref:
    """An input connected to another node of the same material graph."""

    node: str


@dataclass(frozen=True)
class Tex:
    """A `filename` input reading one of the material's PNGs."""

    slot: str
    colorspace: str | None = None


@dataclass(frozen=True)
class GraphNode:
    name: str
    category: str
    type: str
    nodedef: str
    inputs: dict[str, Any]


def export_materials(instances: Mapping[str, Instance], pbr: Mapping[str, PBRMaps], *,
                     sheen_for_fabric: bool = True) -> list[ExportMaterial]:
    """The exported instances (those with faces), in instance order, with unique identifiers."""
    missing = [key for key in instances if key not in pbr]
    if missing:
        raise UserError(f"no PBR maps for instance(s) {', '.join(missing)}", param="pbr",
                        hint="connect the brdf.decompose output made for the same instances")
    kept = [name for name, inst in instances.items() if int(inst.face_mask.sum()) > 0]
    if not kept:
        raise UserError("the scene has no triangles to export", param="scene")
    idents = identifiers(kept)
    out = []
    for name in kept:
        maps = pbr[name]
        sheen = sheen_colour(maps) if sheen_for_fabric and maps.material == "fabric" else None
        out.append(ExportMaterial(name=name, ident=idents[name], pngs=material_pngs(maps),
                                  size=(int(maps.albedo.shape[1]), int(maps.albedo.shape[2])), sheen=sheen))
    return out


def material_graph(material: ExportMaterial) -> tuple[list[GraphNode], dict[str, Any]]:
    """The texture nodes (in dependency order) and the standard_surface inputs of one material."""
    nodes = [
        GraphNode("base_color_image", "image", "color3", "ND_image_color3",
                  {"file": Tex("base_color", "srgb_texture")}),
        GraphNode("orm_image", "image", "vector3", "ND_image_vector3", {"file": Tex("orm")}),
        GraphNode("occlusion", "extract", "float", "ND_extract_vector3", {"in": Ref("orm_image"), "index": 0}),
        GraphNode("roughness", "extract", "float", "ND_extract_vector3", {"in": Ref("orm_image"), "index": 1}),
        GraphNode("metallic", "extract", "float", "ND_extract_vector3", {"in": Ref("orm_image"), "index": 2}),
        GraphNode("normal_image", "image", "vector3", "ND_image_vector3", {"file": Tex("normal")}),
        GraphNode("normalmap", "normalmap", "vector3", "ND_normalmap_float", {"in": Ref("normal_image")}),
    ]
    if material.pngs.height is not None:  # the relief's grey map; the displacement node scales it to metres
        nodes.append(GraphNode("height_image", "image", "float", "ND_image_float", {"file": Tex("height")}))
    surface: dict[str, Any] = {
        "base": 1.0, "base_color": Ref("base_color_image"), "metalness": Ref("metallic"),
        "specular": 1.0, "specular_roughness": Ref("roughness"), "specular_IOR": 1.5, "normal": Ref("normalmap"),
    }
    if material.sheen is not None:
        surface.update({"sheen": 1.0, "sheen_color": tuple(material.sheen), "sheen_roughness": 0.5})
    return nodes, surface


# MaterialX types of the standard_surface inputs we set (the rest keep the nodedef's defaults).
SURFACE_INPUT_TYPES = {
    "base": "float", "base_color": "color3", "metalness": "float", "specular": "float",
    "specular_roughness": "float", "specular_IOR": "float", "normal": "vector3",
    "sheen": "float", "sheen_color": "color3", "sheen_roughness": "float",
}
NODE_INPUT_TYPES = {"file": "filename", "in": None, "index": "integer"}  # None: the upstream node's type


def typed_value(value: Any, mtype: str) -> list[float] | int | float:
    """An input's value as the Python numbers of its MaterialX type `mtype` (a color3 is three floats)."""
    if mtype == "color3":
        return [float(c) for c in value]
    if mtype == "integer":
        return int(value)
    return float(value)


def _set_value(port: mx.Input, value: Any, mtype: str) -> None:
    typed = typed_value(value, mtype)
    port.setValue(mx.Color3(*typed) if isinstance(typed, list) else typed)


def _add_graph(doc: mx.Document, material: ExportMaterial, texture_dir: str) -> mx.NodeGraph:
    nodes, _ = material_graph(material)
    graph = doc.addNodeGraph(f"NG_{material.ident}")
    types = {node.name: node.type for node in nodes}
    for spec in nodes:
        node = graph.addNode(spec.category, spec.name, spec.type)
        for key, value in spec.inputs.items():
            if isinstance(value, Tex):
                port = node.addInput(key, "filename")
                port.setValueString(f"{texture_dir}/{material.texture_name(value.slot)}")
                if value.colorspace:
                    port.setColorSpace(value.colorspace)
            elif isinstance(value, Ref):
                node.addInput(key, types[value.node]).setNodeName(value.node)
            else:
                _set_value(node.addInput(key, NODE_INPUT_TYPES[key] or "float"), value, NODE_INPUT_TYPES[key])
    for name in ("base_color_image", "roughness", "metallic", "normalmap", "occlusion", "height_image"):
        if name in types:
            graph.addOutput(f"{name}_out", types[name]).setNodeName(name)
    return graph


def _add_material(doc: mx.Document, material: ExportMaterial, graph: mx.NodeGraph) -> None:
    _, surface_inputs = material_graph(material)
    shader = doc.addNode("standard_surface", f"SR_{material.ident}", "surfaceshader")
    for key, value in surface_inputs.items():
        port = shader.addInput(key, SURFACE_INPUT_TYPES[key])
        if isinstance(value, Ref):
            port.setNodeGraphString(graph.getName())
            port.setOutputString(f"{value.node}_out")
        else:
            _set_value(port, value, SURFACE_INPUT_TYPES[key])
    mat = doc.addMaterialNode(f"M_{material.ident}", shader)
    if material.pngs.height is not None:  # standard_surface has no height: the material's displacement does
        displacement = doc.addNode("displacement", f"DS_{material.ident}", "displacementshader")
        port = displacement.addInput("displacement", "float")
        port.setNodeGraphString(graph.getName())
        port.setOutputString("height_image_out")
        displacement.addInput("scale", "float").setValue(float(material.pngs.height_scale))
        mat.addInput("displacementshader", "displacementshader").setNodeName(displacement.getName())
    mat.setAttribute("uiname", material.name)
    shader.setAttribute("uiname", material.name)


@functools.lru_cache(maxsize=1)
def standard_libraries() -> mx.Document:
    """MaterialX's own node definitions (stdlib, pbrlib, bxdf), loaded once, for validation."""
    libraries = mx.createDocument()
    mx.loadLibraries(mx.getDefaultDataLibraryFolders(), mx.getDefaultDataSearchPath(), libraries)
    return libraries


def validate_document(doc: mx.Document) -> tuple[bool, str]:
    """`Document.validate()` with the standard libraries imported, so every node is checked against
    its nodedef (validating the bare document would accept any category and input)."""
    checked = mx.createDocument()
    checked.copyContentFrom(doc)
    checked.importLibrary(standard_libraries())
    return checked.validate()


def build_materialx(materials: list[ExportMaterial], *, texture_dir: str) -> str:
    """The .mtlx document text: per instance a node graph, a standard_surface and a surfacematerial."""
    doc = mx.createDocument()
    doc.setVersionString(MTLX_VERSION)
    doc.setColorSpace("lin_rec709")
    for material in materials:
        graph = _add_graph(doc, material, texture_dir)
        _add_material(doc, material, graph)
    valid, message = validate_document(doc)
    if not valid:  # a bug in this writer, not a user error
        raise RuntimeError(f"export.materialx built an invalid MaterialX document: {message}")
    options = mx.XmlWriteOptions()
    options.writeXIncludeEnable = False
    return mx.writeToXmlString(doc, options)


def write_materialx(materials: list[ExportMaterial], *, basename: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """`{basename}.mtlx` and its PNGs under `{basename}_textures/` (paths relative to --out), and a summary."""
    texture_dir = f"{basename}_textures"
    files: dict[str, bytes] = {f"{basename}.mtlx": build_materialx(materials, texture_dir=texture_dir).encode()}
    for material in materials:
        for slot in material.slots():
            files[f"{texture_dir}/{material.texture_name(slot)}"] = material.png(slot)
    summary = {
        "document": f"{basename}.mtlx",
        "materialx_version": MTLX_VERSION,
        "shader": "standard_surface",
        "instances": len(materials),
        "materials": [f"M_{m.ident}" for m in materials],
        "names": {m.name: m.ident for m in materials},
        "sheen": [m.name for m in materials if m.sheen is not None],
        "displacement": [m.name for m in materials if m.pngs.height is not None],
    }
    return files, summary
