"""export.materialx: a MaterialX 1.39 document that validates; per instance a standard_surface over the glTF's PNGs."""
from __future__ import annotations

from pathlib import Path

import MaterialX as mx
import numpy as np
import pytest
from conftest import NAMES, glb_material_pngs, pixels

from graphflow.testing import make_context
from nodes.export.materialx_writer import validate_document
from nodes.export.nodes import ExportMaterialx


@pytest.fixture(scope="module")
def document(exports: dict) -> mx.Document:
    doc = mx.createDocument()
    mx.readFromXmlFile(doc, str(exports["mtlx_path"]))
    return doc


def test_document_is_materialx_139_and_validates(document: mx.Document) -> None:
    assert document.getVersionString() == "1.39"
    assert document.validate() == (True, "")
    assert validate_document(document) == (True, "")  # against the nodedefs of MaterialX's own libraries


def test_validation_catches_a_broken_graph(document: mx.Document) -> None:
    broken = mx.createDocument()
    broken.copyContentFrom(document)
    shader = broken.getNode(f"SR_{NAMES['floor A']}")
    shader.getInput("specular_roughness").setType("color3")  # the nodedef says float
    valid, message = validate_document(broken)
    assert not valid and "specular_roughness" in message


def test_one_standard_surface_material_per_instance(document: mx.Document) -> None:
    materials = document.getMaterialNodes()
    assert [m.getName() for m in materials] == [f"M_{ident}" for ident in NAMES.values()]
    for material, name in zip(materials, NAMES, strict=True):
        assert material.getAttribute("uiname") == name  # the original name travels along
        (shader,) = mx.getShaderNodes(material)
        assert shader.getCategory() == "standard_surface"
        assert shader.getInput("base").getValue() == 1.0
        for port in ("base_color", "specular_roughness", "metalness", "normal"):
            assert shader.getInput(port).getNodeGraphString() == f"NG_{NAMES[name]}", port
        assert (shader.getInput("sheen") is not None) == (name == "2 seat sofa")


def test_images_are_relative_existing_files_with_the_right_colour_space(document: mx.Document, exports: dict) -> None:
    folder = Path(exports["mtlx_path"]).parent
    for graph in document.getNodeGraphs():
        images = {node.getName(): node for node in graph.getNodes("image")}
        assert set(images) == {"base_color_image", "orm_image", "normal_image"}
        for node in images.values():
            filename = node.getInput("file").getValueString()
            assert not Path(filename).is_absolute() and (folder / filename).is_file(), filename
        assert images["base_color_image"].getType() == "color3"
        assert images["base_color_image"].getInput("file").getColorSpace() == "srgb_texture"
        for data in ("orm_image", "normal_image"):  # vector3 images are never colour-converted ("raw")
            assert images[data].getType() == "vector3" and images[data].getInput("file").getColorSpace() == ""
        (normalmap,) = graph.getNodes("normalmap")
        assert normalmap.getInput("in").getNodeName() == "normal_image"
        channels = {n.getName(): n.getInput("index").getValue() for n in graph.getNodes("extract")}
        assert channels == {"occlusion": 0, "roughness": 1, "metallic": 2}


def test_maps_are_pixel_identical_in_glb_usdz_and_mtlx_folder(exports: dict) -> None:
    import zipfile

    glb_pngs = glb_material_pngs(exports["glb"].data)
    folder = Path(exports["mtlx_path"]).parent
    suffixes = {"base_color": "baseColor", "orm": "occlusionRoughnessMetallic", "normal": "normal"}
    with zipfile.ZipFile(exports["usdz"]) as package:
        for name, ident in NAMES.items():
            for slot, suffix in suffixes.items():
                reference = pixels(glb_pngs[name][slot])
                in_usdz = pixels(package.read(f"textures/{ident}_{suffix}.png"))
                in_folder = pixels((folder / f"asset_textures/{ident}_{suffix}.png").read_bytes())
                assert reference.shape == (32, 32, 3)
                assert np.array_equal(reference, in_usdz) and np.array_equal(reference, in_folder), (name, slot)


def test_summary_maps_names_and_files_sit_beside_the_document(exports: dict) -> None:
    tree = exports["mtlx"]
    assert tree.summary["names"] == NAMES and tree.summary["document"] == "asset.mtlx"
    assert sorted(tree.files) == sorted(["asset.mtlx", *[f"asset_textures/{i}_{s}.png" for i in NAMES.values()
                                                         for s in ("baseColor", "occlusionRoughnessMetallic",
                                                                   "normal")]])
    inputs = {"instances": exports["inputs"]["instances"], "pbr": exports["inputs"]["pbr"]}
    again = ExportMaterialx().run(make_context("export_mtlx"), **inputs)
    assert again.files == tree.files  # deterministic
    renamed = ExportMaterialx({"filename": "room", "sheen_for_fabric": False}).run(make_context("m"), **inputs)
    text = renamed.files["room.mtlx"].decode()
    assert 'value="room_textures/' in text and "sheen" not in text
