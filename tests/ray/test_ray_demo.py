"""Real pipelines under both executors: byte-identical files (slow: a few minutes on 2 cores)."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO.parent / "shared" / "assets"
PLUGINS = "helpers.toy_plugin,nodes.batch.nodes"  # nodes.batch until nodes/catalog.py imports it

SMALL_DEMO = [  # small enough for a few minutes on 2 loaded cores (resolution 32 trips distill on thin walls)
    "semantic.params.steps=2", "pixel.params.steps=2", "superres.params.steps=2", "brdf.params.steps=2",
    "brdf.params.ao_rays=4", "views.params.count=2", "views.params.resolution=64", "views.params.texels_per_metre=0",
    "semantic.params.texture_size=64", "pixel.params.texture_size=64", "semantic.params.bank_size=256",
    "project.params.texels_per_metre=16", "project.params.min_size=32", "project.params.max_size=64",
    "pixel.params.bank_size=256", "superres.params.bank_size=256", "preview.params.resolution=32",
]
SMALL_SCENE = [s for s in SMALL_DEMO if not s.startswith("preview.")]


def sets(overrides: list[str]) -> list[str]:
    return [arg for s in overrides for arg in ("--set", s)]


@pytest.mark.slow
def test_demo_room_asset_is_byte_identical_local_and_ray(tmp_path: Path, cli) -> None:
    demo = REPO / "graphs" / "demo_room.yaml"
    if not demo.exists():
        pytest.skip("graphs/demo_room.yaml is not there yet")
    outs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        result = cli("run", str(demo), "-q", "--executor", executor, "--out", str(out),
                     "--cache", str(tmp_path / f"cache-{executor}"), *sets(SMALL_DEMO),
                     env={"GRAPHFLOW_PLUGINS": PLUGINS}, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        outs[executor] = out
    local_glb, ray_glb = (outs[e] / "asset.glb" for e in ("local", "ray"))
    assert local_glb.read_bytes() == ray_glb.read_bytes()
    assert (outs["local"] / "preview.png").read_bytes() == (outs["ray"] / "preview.png").read_bytes()
    keys = [{(n["node"], n["item"]): n["key"] for n in json.loads((o / "report.json").read_text())["nodes"]}
            for o in outs.values()]
    assert keys[0] == keys[1]


@pytest.mark.slow
def test_batch_graph_over_a_scene_folder_on_ray(tmp_path: Path, cli) -> None:
    box = ASSETS / "Box" / "Box.glb"
    if not box.exists():
        pytest.skip(f"shared test asset {box} is absent")
    scenes, refs = tmp_path / "scenes", tmp_path / "refs"
    scenes.mkdir()
    refs.mkdir()
    shutil.copy(box, scenes / "box.glb")
    (scenes / "tent.obj").write_text("o tent\nv 0 0 0\nv 1 0 0\nv 1 0 1\nv 0 0 1\nv 0.5 1 0.5\n"
                                     "f 1 2 5\nf 2 3 5\nf 3 4 5\nf 4 1 5\nf 1 3 2\nf 1 4 3\n")
    (refs / "box.yaml").write_text("default: {material: plastic}\n")
    (refs / "tent.yaml").write_text("default: {material: wood}\n")
    graph = REPO / "graphs" / "batch_texture.yaml"
    inner = json.dumps(SMALL_SCENE)
    # (byte identity with the local executor is the demo test's job; this one checks the fan-out)
    result = cli("run", str(graph), "-q", "--executor", "ray", "--out", str(tmp_path / "ray"),
                 "--cache", str(tmp_path / "cache"), "--input", f"scenes={scenes}", "--input", f"references={refs}",
                 "--set", f"texture.params.set={inner}", env={"GRAPHFLOW_PLUGINS": PLUGINS}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "ray" / "assets.zip") as archive:
        assert archive.namelist() == ["box.glb", "tent.glb"]
        assert archive.read("box.glb")[:4] == b"glTF" and archive.read("tent.glb")[:4] == b"glTF"
    # editing one scene's references re-runs that scene only
    (refs / "tent.yaml").write_text("default: {material: metal}\n")
    result = cli("run", str(graph), "-q", "--executor", "ray", "--out", str(tmp_path / "again"),
                 "--cache", str(tmp_path / "cache"), "--input", f"scenes={scenes}", "--input", f"references={refs}",
                 "--set", f"texture.params.set={inner}", env={"GRAPHFLOW_PLUGINS": PLUGINS}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    st = {(n["node"], n["item"]): n["status"] for n in report["nodes"]}
    assert st[("texture", "box")] == "cached" and st[("texture", "tent")] == "ran"
