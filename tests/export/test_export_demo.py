"""The demo writes asset.glb, .usdz and .mtlx (+ PNGs) from the same maps; a brdf change re-exports all three."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import MaterialX as mx
import numpy as np
import pytest
from conftest import glb_material_pngs, pixels

from nodes.export.materialx_writer import validate_document
from nodes.export.usd_check import arkit_compliance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_helpers import GRAPHS, SMALL, graphflow_cli, ran  # noqa: E402

pytestmark = pytest.mark.slow
SUFFIXES = {"base_color": "baseColor", "orm": "occlusionRoughnessMetallic", "normal": "normal"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo_exports")
    out = root / "out"
    res = graphflow_cli("run", str(GRAPHS / "demo_room.yaml"), "--out", str(out), "--cache", str(root / "cache"),
                        "-q", *SMALL, cwd=root)
    assert res.returncode == 0, res.stderr
    return {"root": root, "out": out}


def test_demo_writes_three_consistent_exports(demo: dict[str, Path]) -> None:
    out = demo["out"]
    report = json.loads((out / "report.json").read_text())
    names = report["outputs"]["usdz"]["summary"]["names"]
    assert names == report["outputs"]["mtlx"]["summary"]["names"] and len(names) >= 6
    assert report["outputs"]["usdz"]["files"] == ["asset.usdz"]
    assert arkit_compliance(out / "asset.usdz") == {"errors": [], "failed": [], "warnings": []}
    doc = mx.createDocument()
    mx.readFromXmlFile(doc, str(out / "asset.mtlx"))
    assert validate_document(doc) == (True, "")
    for node in doc.getNodes() + [n for g in doc.getNodeGraphs() for n in g.getNodes("image")]:
        if node.getCategory() == "image":
            assert (out / node.getInput("file").getValueString()).is_file()
    glb_pngs = glb_material_pngs((out / "asset.glb").read_bytes())
    assert set(glb_pngs) == set(names)
    with zipfile.ZipFile(out / "asset.usdz") as package:
        for name, ident in names.items():
            for slot, suffix in SUFFIXES.items():
                reference = pixels(glb_pngs[name][slot])
                assert np.array_equal(reference, pixels(package.read(f"textures/{ident}_{suffix}.png")))
                assert np.array_equal(reference, pixels((out / f"asset_textures/{ident}_{suffix}.png").read_bytes()))


def test_brdf_change_reexports_all_three_and_nothing_else(demo: dict[str, Path]) -> None:
    out = demo["root"] / "brdf"
    change = ["--set", "brdf.params.normal_strength=0.5"]  # changes the normal maps whatever the light model
    res = graphflow_cli("run", str(GRAPHS / "demo_room.yaml"), "--out", str(out), "--cache",
                        str(demo["root"] / "cache"), "-q", *SMALL, *change, cwd=demo["root"])
    assert res.returncode == 0, res.stderr
    assert {r.split("[")[0] for r in ran(out)} == {"brdf", "export", "export_usd", "export_mtlx", "preview", "page"}
    assert (out / "asset.usdz").read_bytes() != (demo["out"] / "asset.usdz").read_bytes()
