"""graphs/preview_projection.yaml through the real CLI on SheenChair: seconds, a valid glb, the file's own UVs kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT.parent / "shared" / "assets"
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"


def _accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    width = {"VEC2": 2, "VEC3": 3, "VEC4": 4, "SCALAR": 1}[accessor.type]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    data = np.frombuffer(blob, dtype=np.float32, count=accessor.count * width, offset=start)
    return data.reshape(accessor.count, width)


def _uvs(gltf: pygltflib.GLTF2, blob: bytes, mesh_name: str) -> np.ndarray:
    """The distinct TEXCOORD_0 values of every primitive of the named mesh (order-free comparison)."""
    rows = [_accessor(gltf, blob, p.attributes.TEXCOORD_0) for m in gltf.meshes if m.name == mesh_name
            for p in m.primitives]
    return np.unique(np.concatenate(rows), axis=0)


@pytest.mark.slow
def test_preview_projection_on_sheen_chair_keeps_its_uvs(tmp_path: Path) -> None:
    if not CHAIR.exists():
        pytest.skip(f"SheenChair asset not found under {ASSETS} (../shared/assets)")
    (tmp_path / "refs.yaml").write_text(
        f"instances:\n  SheenChair_label: {{images: {CHAIR.parent / 'chair_label.png'}, mode: fit}}\n"
        f"  SheenChair_fabric: {{images: {CHAIR.parent / 'chair_fabric_albedo.png'}, size: 0.1}}\n"
        "default: {material: generic}\n")
    env = {k: v for k, v in os.environ.items() if k != "GRAPHFLOW_PLUGINS"}
    res = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(ROOT / "graphs" / "preview_projection.yaml"),
                          "--input", f"scene={CHAIR}", "--input", f"references={tmp_path / 'refs.yaml'}",
                          "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "-q"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {n["node"] for n in report["nodes"]} >= {"project", "brdf", "export"}
    from nodes.export.validator import validate_glb, validator_available

    if validator_available():
        assert validate_glb(tmp_path / "out" / "asset.glb")["issues"]["numErrors"] == 0
    # The label and the metal keep the file's own TEXCOORD_0 (valid UVs are never re-unwrapped).
    source = pygltflib.GLTF2().load(str(CHAIR))
    source_blob = (CHAIR.parent / source.buffers[0].uri).read_bytes()
    written = pygltflib.GLTF2().load(str(tmp_path / "out" / "asset.glb"))
    written_blob = written.binary_blob()
    source_node = {n.name: n for n in source.nodes}
    for instance in ("SheenChair_label", "SheenChair_metal"):
        mesh_name = source.meshes[source_node[instance].mesh].name
        expected = _uvs(source, source_blob, mesh_name)
        written_mesh = next(m.name for m in written.meshes if instance in (m.name or ""))
        got = _uvs(written, written_blob, written_mesh)
        assert got.shape == expected.shape and np.array_equal(got, expected), instance
