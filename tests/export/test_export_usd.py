"""export.usd: an ARKit-clean usdz whose meshes, UsdPreviewSurface and MaterialX materials read the glTF's maps."""
from __future__ import annotations

import dataclasses
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NAMES, awkward_scene, glb_chunks, glb_material_pngs, pixels
from pxr import Ar, Sdf, Usd, UsdGeom, UsdShade

from graphflow import Keyed, UserError
from graphflow.testing import make_context
from nodes.export.materialx_writer import export_materials
from nodes.export.nodes import ExportUsd
from nodes.export.usd_check import arkit_compliance
from nodes.export.usd_writer import build_stage


def _source(port: UsdShade.Input) -> tuple[UsdShade.Shader, str]:
    connectable, output, _ = port.GetConnectedSource()
    return UsdShade.Shader(connectable.GetPrim()), output


def _bound(stage: Usd.Stage) -> dict[str, tuple[UsdGeom.Mesh, UsdShade.Material]]:
    """displayName (the original instance name) -> (mesh, bound material)."""
    out = {}
    for prim in stage.Traverse():
        if prim.IsA(UsdGeom.Mesh):
            material, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
            out[prim.GetDisplayName()] = (UsdGeom.Mesh(prim), material)
    return out


def _read_asset(port: UsdShade.Input) -> tuple[str, bytes]:
    """The resolved path of a texture input and its bytes, read through USD's resolver."""
    resolved = port.Get().resolvedPath
    asset = Ar.GetResolver().OpenAsset(Ar.ResolvedPath(resolved))
    return resolved, bytes(asset.GetBuffer())


def _preview_textures(material: UsdShade.Material) -> dict[str, tuple[UsdShade.Shader, str]]:
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetShaderId() == "UsdPreviewSurface"
    return {name: _source(surface.GetInput(name))
            for name in ("diffuseColor", "roughness", "metallic", "occlusion", "normal")}


def test_usdz_is_arkit_compliant(exports: dict) -> None:
    report = arkit_compliance(exports["usdz"])
    assert report == {"errors": [], "failed": [], "warnings": []}, report


def test_the_checker_checks_materialx_input_types(exports: dict, tmp_path: Path) -> None:
    scene, instances, pbr = exports["inputs"].values()
    path = tmp_path / "asset.usda"
    build_stage(path, scene, dict(instances.items()), export_materials(instances, pbr))
    stage = Usd.Stage.Open(str(path))
    surface = stage.GetPrimAtPath(f"/Root/Materials/{NAMES['floor A']}/mtlx_surface")
    surface.RemoveProperty("inputs:specular_IOR")
    surface.CreateAttribute("inputs:specular_IOR", Sdf.ValueTypeNames.Double).Set(1.5)  # nodedef: float
    stage.Save()
    failed = arkit_compliance(path)["failed"]
    assert any("Incorrect type" in f and "specular_IOR" in f for f in failed), failed


def test_stage_is_in_metres_y_up_with_st_and_normals(exports: dict) -> None:
    stage = Usd.Stage.Open(str(exports["usdz"]))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert stage.GetDefaultPrim().GetPath() == Sdf.Path("/Root")
    document, binary = glb_chunks(exports["glb"].data)
    gltf_uv = {}
    for mesh in document["meshes"]:
        accessor = document["accessors"][mesh["primitives"][0]["attributes"]["TEXCOORD_0"]]
        view = document["bufferViews"][accessor["bufferView"]]
        gltf_uv[mesh["name"]] = np.frombuffer(binary, np.float32, accessor["count"] * 2,
                                              view["byteOffset"]).reshape(-1, 2)
    meshes = _bound(stage)
    assert set(meshes) == set(NAMES)
    for name, (mesh, _) in meshes.items():
        st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
        assert st.GetTypeName() == Sdf.ValueTypeNames.TexCoord2fArray and st.GetInterpolation() == "vertex"
        st_values = np.asarray(st.Get())
        np.testing.assert_allclose(st_values[:, 0], gltf_uv[name][:, 0])
        np.testing.assert_allclose(st_values[:, 1], 1.0 - gltf_uv[name][:, 1], atol=1e-7)  # v flipped
        normals = np.asarray(mesh.GetNormalsAttr().Get())
        assert normals.shape == (len(mesh.GetPointsAttr().Get()), 3) and mesh.GetNormalsInterpolation() == "vertex"
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
        assert set(mesh.GetFaceVertexCountsAttr().Get()) == {3}


def test_every_mesh_reads_its_own_textures_inside_the_package(exports: dict) -> None:
    stage = Usd.Stage.Open(str(exports["usdz"]))
    glb_pngs = glb_material_pngs(exports["glb"].data)
    for name, (mesh, material) in _bound(stage).items():
        assert material, f"{name} has no material"
        assert material.GetPath() == Sdf.Path(f"/Root/Materials/{NAMES[name]}")
        textures = _preview_textures(material)
        expected = {"diffuseColor": ("base_color", "rgb", "sRGB"), "roughness": ("orm", "g", "raw"),
                    "metallic": ("orm", "b", "raw"), "occlusion": ("orm", "r", "raw"),
                    "normal": ("normal", "rgb", "raw")}
        for port, (slot, channel, colour_space) in expected.items():
            texture, output = textures[port]
            assert texture.GetShaderId() == "UsdUVTexture" and output == channel, (name, port)
            assert texture.GetInput("sourceColorSpace").Get() == colour_space, (name, port)
            resolved, data = _read_asset(texture.GetInput("file"))
            assert resolved.startswith(str(exports["usdz"]) + "[textures/"), resolved  # inside the package
            assert data == glb_pngs[name][slot], (name, port)  # the glTF's own PNG
            reader, _ = _source(texture.GetInput("st"))
            assert reader.GetShaderId() == "UsdPrimvarReader_float2" and reader.GetInput("varname").Get() == "st"
        normal_texture = textures["normal"][0]
        assert tuple(normal_texture.GetInput("scale").Get()) == (2, 2, 2, 1)
        assert tuple(normal_texture.GetInput("bias").Get()) == (-1, -1, -1, 0)


def test_materialx_material_is_bound_beside_the_preview_surface(exports: dict) -> None:
    stage = Usd.Stage.Open(str(exports["usdz"]))
    glb_pngs = glb_material_pngs(exports["glb"].data)
    for name, (_, material) in _bound(stage).items():
        surface = material.ComputeSurfaceSource("mtlx")[0]
        assert surface.GetShaderId() == "ND_standard_surface_surfaceshader"
        base_colour, _ = _source(surface.GetInput("base_color"))
        assert base_colour.GetShaderId() == "ND_image_color3"
        assert base_colour.GetInput("file").GetAttr().GetColorSpace() == "srgb_texture"
        assert _read_asset(base_colour.GetInput("file"))[1] == glb_pngs[name]["base_color"]
        roughness, _ = _source(surface.GetInput("specular_roughness"))
        assert roughness.GetShaderId() == "ND_extract_vector3" and roughness.GetInput("index").Get() == 1
        normalmap, _ = _source(surface.GetInput("normal"))
        assert normalmap.GetShaderId() == "ND_normalmap_float"
        assert _source(normalmap.GetInput("in"))[0].GetShaderId() == "ND_image_vector3"
        sheen = surface.GetInput("sheen")
        assert bool(sheen) == (name == "2 seat sofa"), name  # the one fabric


def test_package_holds_the_root_layer_first_and_aligned_pngs(exports: dict) -> None:
    with zipfile.ZipFile(exports["usdz"]) as package:
        infos = package.infolist()
        assert infos[0].filename == "asset.usdc"
        assert {i.filename for i in infos[1:]} == {f"textures/{ident}_{suffix}.png" for ident in NAMES.values()
                                                  for suffix in ("baseColor", "occlusionRoughnessMetallic", "normal")}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}  # no build-time stamps
        assert all((i.header_offset + 30 + len(i.filename) + len(i.extra)) % 64 == 0 for i in infos)  # usdz rule


def test_names_are_sanitised_uniquely_and_mapped_in_the_summary(exports: dict) -> None:
    summary = exports["usd"].summary
    assert summary["names"] == NAMES
    assert summary["materials"] == [f"/Root/Materials/{ident}" for ident in NAMES.values()]
    document, _ = glb_chunks(exports["glb"].data)
    assert [m["name"] for m in document["materials"]] == list(NAMES)  # the glTF keeps the originals


def test_export_is_byte_deterministic(exports: dict) -> None:
    again = ExportUsd().run(make_context("export_usd"), **exports["inputs"])
    assert again.files == exports["usd"].files


def test_oversize_maps_warn_or_are_downsized_in_the_usdz_only(exports: dict, tmp_path: Path, caplog) -> None:
    inputs = exports["inputs"]
    with caplog.at_level(logging.WARNING):
        kept = ExportUsd({"max_texture": 16}).run(make_context("export_usd"), **inputs)
    assert len(kept.summary["oversize_textures"]) == 4 and "over ARKit's 16 px" in caplog.text
    assert kept.files["asset.usdz"] == exports["usd"].files["asset.usdz"]  # "warn" keeps the glTF's pixels
    small = ExportUsd({"max_texture": 16, "oversize": "downsize"}).run(make_context("export_usd"), **inputs)
    path = tmp_path / "small.usdz"
    path.write_bytes(small.files["asset.usdz"])
    assert arkit_compliance(path)["failed"] == []
    with zipfile.ZipFile(path) as package:
        for info in package.infolist()[1:]:
            image = pixels(package.read(info))
            assert image.shape[:2] == (16, 16), info.filename
        normal = pixels(package.read(f"textures/{NAMES['floor A']}_normal.png")).astype(float) / 255 * 2 - 1
        assert np.abs(np.linalg.norm(normal, axis=2) - 1).max() < 0.02  # renormalised after filtering


def test_bad_input_is_a_user_error(exports: dict) -> None:
    scene, instances, pbr = exports["inputs"].values()
    with pytest.raises(UserError, match="no PBR maps for instance"):
        ExportUsd().run(make_context("export_usd"), scene=scene, instances=instances,
                        pbr=Keyed({"floor A": pbr["floor A"]}))
    for bad in ("../asset", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            ExportUsd({"filename": bad})


def test_instances_without_faces_are_left_out() -> None:
    scene, instances, pbr = awkward_scene()
    empty = dataclasses.replace(instances["floor A"], face_mask=torch.zeros_like(instances["floor A"].face_mask))
    instances = Keyed({**dict(instances.items()), "floor A": empty})
    tree = ExportUsd().run(make_context("export_usd"), scene=scene, instances=instances, pbr=pbr)
    assert "floor A" not in tree.summary["names"] and tree.summary["instances"] == 3
