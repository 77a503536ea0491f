"""glTF export and preview of a procedural two-instance scene; every file goes through the validator."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from graphflow import FileBlob, Keyed, UserError
from graphflow.testing import make_context
from nodes.export.nodes import ExportGltf, PreviewRender
from nodes.export.validator import issue_summary, validate_glb, validator_available
from nodes.types import PBRMaps

from helpers.brdf_scenes import sphere_on_floor

SIZE = 32

needs_validator = pytest.mark.skipif(not validator_available(),
                                     reason="glTF validator not installed: npm ci --prefix tools/gltf-validator")


def _maps(material: str, seed: int) -> PBRMaps:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[2:30, 2:30] = True
    normal = torch.nn.functional.normalize(
        torch.cat([0.3 * torch.randn(2, SIZE, SIZE, generator=generator), torch.ones(1, SIZE, SIZE)]), dim=0)
    return PBRMaps(
        albedo=torch.rand(3, SIZE, SIZE, generator=generator), roughness=torch.rand(1, SIZE, SIZE, generator=generator),
        metallic=torch.zeros(1, SIZE, SIZE), normal=normal, occlusion=torch.rand(1, SIZE, SIZE, generator=generator),
        mask=mask, material=material,
    )


@pytest.fixture(scope="module")
def asset() -> dict:
    scene, instances = sphere_on_floor(rings=12, segments=24)
    pbr = Keyed({"sphere": _maps("fabric", 1), "floor": _maps("wood", 2)})
    blob = ExportGltf().run(make_context("export"), scene=scene, instances=instances, pbr=pbr)
    return {"scene": scene, "instances": instances, "pbr": pbr, "blob": blob}


def _chunks(glb: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", glb, 0)
    assert magic == b"glTF" and version == 2 and length == len(glb)
    json_len, json_type = struct.unpack_from("<I4s", glb, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    document = json.loads(glb[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", glb, 20 + json_len)
    assert bin_type == b"BIN\x00" and bin_len % 4 == 0
    return document, glb[28 + json_len:28 + json_len + bin_len]


def test_glb_follows_the_export_contract(asset: dict) -> None:
    blob = asset["blob"]
    assert isinstance(blob, FileBlob) and blob.suffix == ".glb"
    assert blob.summary["instances"] == 2 and blob.summary["sheen"] == ["sphere"]
    document, binary = _chunks(blob.data)
    assert [m["name"] for m in document["materials"]] == ["sphere", "floor"]
    assert [m["name"] for m in document["meshes"]] == ["sphere", "floor"]
    assert document["extensionsUsed"] == ["KHR_materials_sheen"]
    assert "KHR_materials_sheen" in document["materials"][0]["extensions"]
    assert "extensions" not in document["materials"][1]
    image_views = {image["bufferView"] for image in document["images"]}
    for index, view in enumerate(document["bufferViews"]):
        assert view["byteOffset"] % 4 == 0
        assert ("target" in view) == (index not in image_views)
    for material in document["materials"]:
        pbr = material["pbrMetallicRoughness"]
        for key in ("baseColorTexture", "metallicRoughnessTexture"):
            assert key in pbr
        assert "normalTexture" in material and "occlusionTexture" in material
    for mesh in document["meshes"]:
        (primitive,) = mesh["primitives"]
        attrs = primitive["attributes"]
        assert set(attrs) == {"POSITION", "NORMAL", "TANGENT", "TEXCOORD_0"}
        position = document["accessors"][attrs["POSITION"]]
        assert "min" in position and "max" in position
        tangent_acc = document["accessors"][attrs["TANGENT"]]
        view = document["bufferViews"][tangent_acc["bufferView"]]
        tangents = np.frombuffer(binary, np.float32, tangent_acc["count"] * 4, view["byteOffset"]).reshape(-1, 4)
        normal_acc = document["accessors"][attrs["NORMAL"]]
        nview = document["bufferViews"][normal_acc["bufferView"]]
        normals = np.frombuffer(binary, np.float32, normal_acc["count"] * 3, nview["byteOffset"]).reshape(-1, 3)
        assert np.allclose(np.linalg.norm(tangents[:, :3], axis=1), 1.0, atol=1e-5)
        assert set(np.unique(tangents[:, 3]).tolist()) <= {-1.0, 1.0}
        assert np.abs((tangents[:, :3] * normals).sum(1)).max() < 1e-4
    # Base colour is sRGB-encoded: a linear 0.2 becomes ~124/255.
    base_texture = document["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    first = document["images"][document["textures"][base_texture]["source"]]
    view = document["bufferViews"][first["bufferView"]]
    png = Image.open(io.BytesIO(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]))
    albedo = asset["pbr"]["sphere"].albedo
    expected = float(albedo[0, 10, 10])
    srgb = 12.92 * expected if expected <= 0.0031308 else 1.055 * expected ** (1 / 2.4) - 0.055
    assert abs(np.asarray(png)[10, 10, 0] / 255.0 - srgb) < 1.5 / 255


def test_glb_opens_in_pygltflib_and_trimesh(asset: dict, tmp_path) -> None:
    path = tmp_path / "asset.glb"
    path.write_bytes(asset["blob"].data)
    gltf = pygltflib.GLTF2().load(str(path))
    assert len(gltf.meshes) == 2 and len(gltf.images) == 6
    loaded = trimesh.load(str(path))
    total = sum(len(g.faces) for g in loaded.geometry.values())
    assert total == asset["scene"].num_faces


@needs_validator
def test_glb_passes_the_khronos_validator(asset: dict) -> None:
    report = validate_glb(asset["blob"].data)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, issue_summary(report)


def test_export_is_byte_deterministic_and_sheen_is_optional(asset: dict) -> None:
    again = ExportGltf().run(make_context("export"), scene=asset["scene"], instances=asset["instances"],
                             pbr=asset["pbr"])
    assert again.data == asset["blob"].data
    plain = ExportGltf({"sheen_for_fabric": False, "name": "room"}).run(
        make_context("export"), scene=asset["scene"], instances=asset["instances"], pbr=asset["pbr"])
    document, _ = _chunks(plain.data)
    assert "extensionsUsed" not in document and document["scenes"][0]["name"] == "room"
    if validator_available():
        report = validate_glb(plain.data)
        assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, issue_summary(report)


def test_missing_maps_are_a_user_error(asset: dict) -> None:
    with pytest.raises(UserError, match="no PBR maps for instance"):
        ExportGltf().run(make_context("export"), scene=asset["scene"], instances=asset["instances"],
                         pbr=Keyed({"sphere": asset["pbr"]["sphere"]}))
    with pytest.raises(Exception):
        ExportGltf({"colour": "red"})


def test_preview_contact_sheet_is_deterministic(asset: dict) -> None:
    node = PreviewRender({"resolution": 64, "views": 2})
    sheet = node.run(make_context("preview"), scene=asset["scene"], instances=asset["instances"], pbr=asset["pbr"])
    again = node.run(make_context("preview"), scene=asset["scene"], instances=asset["instances"], pbr=asset["pbr"])
    assert sheet.suffix == ".png" and sheet.data == again.data
    image = np.asarray(Image.open(io.BytesIO(sheet.data)))
    assert image.shape == (64 + 2 * (32 + 12), 4 * 32, 3)
    views = image[:64, :128]
    background = np.round(((1.055 * 0.18 ** (1 / 2.4) - 0.055) * 255))
    assert (np.abs(views.astype(float) - background).sum(-1) > 3).mean() > 0.05  # the objects are visible


def test_validator_reports_broken_files() -> None:
    if not validator_available():
        pytest.skip("glTF validator not installed: npm ci --prefix tools/gltf-validator")
    report = validate_glb(b"glTF\x02\x00\x00\x00\x0c\x00\x00\x00")
    assert report["issues"]["numErrors"] > 0
