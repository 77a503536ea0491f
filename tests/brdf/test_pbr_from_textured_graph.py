"""graphs/pbr_from_textured.yaml end to end through the CLI, on a small asset with baked lighting."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pygltflib
import pytest
import torch

from graphflow import Keyed
from nodes.export.gltf_writer import build_glb
from nodes.export.validator import issue_summary, validate_glb, validator_available
from nodes.types import PBRMaps

from helpers.brdf_scenes import bake_known_material, checker_albedo, instance_geometry, sphere_on_floor

GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "pbr_from_textured.yaml"
CLI = [str(Path(sys.executable).parent / "graphflow")]

pytestmark = pytest.mark.slow


def _baked_asset(path: Path) -> None:
    """A sphere on a floor whose baseColor textures hold a baked light (the graph's input)."""
    scene, instances = sphere_on_floor(rings=12, segments=24)
    maps = {}
    palettes = {"sphere": ((0.7, 0.2, 0.1), (0.2, 0.5, 0.7)), "floor": ((0.5, 0.4, 0.3), (0.3, 0.2, 0.1))}
    for name, colours in palettes.items():
        geometry = instance_geometry(scene, instances[name], 64)
        uv = (scene.uvs[scene.faces[geometry.face]] * geometry.barycentric[..., None]).sum(1)
        appearance, _ = bake_known_material(scene, geometry, checker_albedo(uv, colours), 0.8, 0.0, ao_rays=64,
                                            light_samples=16)
        maps[name] = PBRMaps(albedo=appearance, roughness=torch.ones(1, 64, 64), metallic=torch.zeros(1, 64, 64),
                             normal=torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1).repeat(1, 64, 64),
                             occlusion=torch.ones(1, 64, 64), mask=geometry.mask, material="generic")
    glb, _ = build_glb(scene, instances, Keyed(maps), sheen_for_fabric=False)
    path.write_bytes(glb)


def _assert_valid(path: Path) -> None:
    if not validator_available():
        pytest.fail("glTF validator not installed: npm ci --prefix tools/gltf-validator")
    report = validate_glb(path)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, issue_summary(report)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", str(GRAPH), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_graph_factorizes_a_baked_asset(tmp_path: Path) -> None:
    asset = tmp_path / "baked.glb"
    _baked_asset(asset)
    _assert_valid(asset)
    refs = tmp_path / "refs.yaml"
    refs.write_text("instances:\n  sphere: {material: fabric}\n")
    common = ["--input", f"scene={asset}", "--input", f"references={refs}", "--cache", str(tmp_path / "cache"),
              "--set", "texture.params.size=64", "--set", "brdf.params.steps=5", "--set", "brdf.params.ao_rays=16",
              "--set", "preview.params.resolution=64"]
    out = tmp_path / "out"
    first = _run(*common, "--out", str(out), "--report", str(tmp_path / "r1.json"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    glb = out / "asset.glb"
    assert glb.is_file() and (out / "preview.png").is_file()
    gltf = pygltflib.GLTF2().load(str(glb))
    names = [m.name for m in gltf.materials]
    assert names == ["sphere", "floor"]
    assert gltf.materials[0].extensions and "KHR_materials_sheen" in gltf.materials[0].extensions  # fabric from refs
    _assert_valid(glb)

    # Nothing changed: everything comes from the cache and the files are the same bytes.
    again = _run(*common, "--out", str(tmp_path / "out2"), "--report", str(tmp_path / "r2.json"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = {entry["status"] for entry in json.loads((tmp_path / "r2.json").read_text())["nodes"]}
    assert statuses == {"cached"}, statuses
    assert (tmp_path / "out2" / "asset.glb").read_bytes() == glb.read_bytes()

    # Without a references file the instances' own hints are used.
    plain = _run("--input", f"scene={asset}", "--cache", str(tmp_path / "cache"), "--set", "texture.params.size=64",
                 "--set", "brdf.params.steps=5", "--set", "brdf.params.ao_rays=16",
                 "--set", "preview.params.resolution=64", "--out", str(tmp_path / "out3"), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    _assert_valid(tmp_path / "out3" / "asset.glb")


def test_graph_reports_a_missing_scene_as_a_user_error(tmp_path: Path) -> None:
    result = _run("--input", f"scene={tmp_path / 'nope.glb'}", "--cache", str(tmp_path / "cache"),
                  "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "nope.glb" in result.stderr + result.stdout
