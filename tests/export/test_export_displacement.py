"""The laid height travels to the exports that take displacement (issue 21 item 3): MaterialX (a
displacement shader on the material, scaled to metres) and USD (UsdPreviewSurface.displacement)."""
from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import MaterialX as mx
import numpy as np
import torch
from conftest import awkward_scene
from PIL import Image
from pxr import Usd, UsdShade

from graphflow import Keyed
from graphflow.testing import make_context
from nodes.export.materialx_writer import validate_document
from nodes.export.nodes import ExportMaterialx, ExportUsd


def test_height_becomes_displacement_in_materialx_and_usd(tmp_path: Path) -> None:
    scene, instances, pbr = awkward_scene()
    name = next(iter(pbr))
    maps = pbr[name]
    rows = torch.linspace(-0.004, 0.006, maps.mask.shape[0])[:, None].expand_as(maps.mask)
    pbr = Keyed({**pbr, name: dataclasses.replace(maps, height=rows[None].clone())})
    tree = ExportMaterialx({"filename": "asset"}).run(make_context("export_mtlx"), instances=instances, pbr=pbr)
    doc = mx.createDocument()
    mx.readFromXmlString(doc, tree.files["asset.mtlx"].decode())
    assert validate_document(doc) == (True, "")
    displaced = [m for m in doc.getMaterialNodes() if m.getInput("displacementshader") is not None]
    assert len(displaced) == 1  # only the instance with a height
    shader = doc.getNode(displaced[0].getInput("displacementshader").getNodeName())
    span = float(rows[maps.mask].max()) - float(rows[maps.mask].min())  # metres over the islands
    assert abs(shader.getInputValue("scale") - span) < 1e-6
    height_png = [data for path, data in tree.files.items() if path.endswith("_height.png")]
    assert len(height_png) == 1
    grey = np.asarray(Image.open(io.BytesIO(height_png[0])))
    assert grey.ndim == 2 and grey.min() == 0 and grey.max() == 255  # the relief spans the grey range

    usd = ExportUsd({"filename": "asset"}).run(make_context("export_usd"), scene=scene, instances=instances, pbr=pbr)
    usdz = tmp_path / "asset.usdz"
    usdz.write_bytes(usd.files["asset.usdz"])
    with zipfile.ZipFile(usdz) as archive:
        assert sum(n.endswith("_height.png") for n in archive.namelist()) == 1
    stage = Usd.Stage.Open(str(usdz))
    surfaces = [UsdShade.Shader(p) for p in stage.Traverse() if p.GetName() == "PreviewSurface"]
    displaced_usd = [s for s in surfaces
                     if s.GetInput("displacement") and s.GetInput("displacement").HasConnectedSource()]
    assert len(displaced_usd) == 1 and len(surfaces) == len(pbr)
