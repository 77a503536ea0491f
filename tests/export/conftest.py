"""One scene exported three ways (glTF, USDZ, MaterialX), with instance names that are not identifiers."""
from __future__ import annotations

import dataclasses
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graphflow import Keyed
from graphflow.testing import make_context
from nodes.export.nodes import ExportGltf, ExportMaterialx, ExportUsd
from nodes.types import Instance, PBRMaps

from helpers.brdf_scenes import sphere_on_floor

SIZE = 32
# a leading digit and a space; unicode and an accent; two names that sanitise to the same identifier
NAMES = {"2 seat sofa": "_2_seat_sofa", "椅子 café": "u6905u5B50_cafe", "floor A": "floor_A", "floor-A": "floor_A_2"}


def pbr_maps(material: str, seed: int, size: int = SIZE) -> PBRMaps:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[2:size - 2, 2:size - 2] = True
    normal = torch.nn.functional.normalize(
        torch.cat([0.3 * torch.randn(2, size, size, generator=generator), torch.ones(1, size, size)]), dim=0)
    return PBRMaps(
        albedo=torch.rand(3, size, size, generator=generator),
        roughness=torch.rand(1, size, size, generator=generator),
        metallic=(torch.rand(1, size, size, generator=generator) > 0.7).float(), normal=normal,
        occlusion=torch.rand(1, size, size, generator=generator), mask=mask, material=material,
    )


def awkward_scene(size: int = SIZE) -> tuple:
    """sphere_on_floor with each of its two parts split in two instances named as in NAMES."""
    scene, base = sphere_on_floor(rings=8, segments=16)

    def split(instance: Instance) -> tuple[torch.Tensor, torch.Tensor]:
        faces = torch.nonzero(instance.face_mask).flatten()
        first, second = torch.zeros_like(instance.face_mask), torch.zeros_like(instance.face_mask)
        first[faces[: len(faces) // 2]] = True
        second[faces[len(faces) // 2:]] = True
        return first, second

    top, bottom = split(base["sphere"])
    left, right = split(base["floor"])
    instances = Keyed({
        "2 seat sofa": dataclasses.replace(base["sphere"], name="2 seat sofa", face_mask=top),
        "椅子 café": dataclasses.replace(base["floor"], name="椅子 café", face_mask=left),
        "floor A": dataclasses.replace(base["floor"], name="floor A", face_mask=right),
        "floor-A": dataclasses.replace(base["sphere"], name="floor-A", face_mask=bottom),
    })
    pbr = Keyed({"2 seat sofa": pbr_maps("fabric", 1, size), "椅子 café": pbr_maps("wood", 2, size),
                 "floor A": pbr_maps("metal", 3, size), "floor-A": pbr_maps("wood", 4, size)})
    return scene, instances, pbr


def glb_chunks(glb: bytes) -> tuple[dict, bytes]:
    (json_len,) = struct.unpack_from("<I", glb, 12)
    document = json.loads(glb[20:20 + json_len])
    (bin_len,) = struct.unpack_from("<I", glb, 20 + json_len)
    return document, glb[28 + json_len:28 + json_len + bin_len]


def glb_material_pngs(glb: bytes) -> dict[str, dict[str, bytes]]:
    """material name -> {base_color, orm, normal: PNG bytes} as the glTF stores them."""
    document, binary = glb_chunks(glb)

    def png(texture_index: int) -> bytes:
        view = document["bufferViews"][document["images"][document["textures"][texture_index]["source"]]["bufferView"]]
        return binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]

    out = {}
    for material in document["materials"]:
        pbr = material["pbrMetallicRoughness"]
        out[material["name"]] = {"base_color": png(pbr["baseColorTexture"]["index"]),
                                 "orm": png(pbr["metallicRoughnessTexture"]["index"]),
                                 "normal": png(material["normalTexture"]["index"])}
    return out


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The three exports of `awkward_scene`, the usdz and the mtlx folder written to disk."""
    scene, instances, pbr = awkward_scene()
    inputs = {"scene": scene, "instances": instances, "pbr": pbr}
    glb = ExportGltf().run(make_context("export"), **inputs)
    usd = ExportUsd().run(make_context("export_usd"), **inputs)
    mtlx = ExportMaterialx().run(make_context("export_mtlx"), instances=instances, pbr=pbr)
    folder = tmp_path_factory.mktemp("exports")
    for tree in (usd, mtlx):
        for rel, data in tree.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
    return {"inputs": inputs, "glb": glb, "usd": usd, "mtlx": mtlx, "folder": folder,
            "usdz": folder / "asset.usdz", "mtlx_path": folder / "asset.mtlx"}


@pytest.fixture(scope="session")
def export_folder(exports: dict) -> Path:
    return exports["folder"]
