"""Issue 23 through the real CLI: files a user has, built here (tests/scene/unit_scenes.py).

- a glb whose baseColor is undecodable bytes typed image/ktx2, and a .gltf + .bin whose png is missing: the
  preview graph (which replaces source textures) exits 0 with one warning line and a note in report.json, and
  its asset passes the Khronos validator; `pbr_from_textured` (which reads them) exits 2 naming the file and
  its extension;
- a millimetre room (units auto) and 0.35 mm spheres: exit 0, the unit in report.json, a valid asset; the
  spheres with the warning that they are too small for the texel density;
- a centimetre scene read as metres (`units: m`): exit 2 before any projection, saying what to change;
  `--max-texels` reaches the budget of the demo room.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import GRAPHS, graphflow_cli
from PIL import Image

from nodes.export.validator import issue_summary, validate_glb, validator_available

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scene"))
from unit_scenes import KTX2_BYTES, demo_room_glb, skeletons_glb, textured_quad, tiny_spheres_glb  # noqa: E402

PREVIEW = ["--set", "project.params.texels_per_metre=16", "--set", "project.params.min_size=16",
           "--set", "project.params.max_size=32", "--set", "brdf.params.steps=2", "--set", "brdf.params.ao_rays=4",
           "--set", "preview.params.resolution=32"]


def _references(folder: Path) -> Path:
    Image.new("RGB", (32, 32), (90, 120, 160)).save(folder / "paint.png")
    (folder / "refs.yaml").write_text("default: {images: paint.png, material: paint}\n")
    return folder / "refs.yaml"


def _unreadable_inputs(root: Path) -> dict[str, Path]:
    return {"ktx2": textured_quad(root / "ktx2", {"mimeType": "image/ktx2"}, KTX2_BYTES),
            "png": textured_quad(root / "missing", {"uri": "missing.png"}, None, glb=False)}


@pytest.mark.slow
@pytest.mark.parametrize("extension", ["ktx2", "png"])
def test_unreadable_source_textures_matter_only_to_the_graph_that_reads_them(tmp_path: Path, extension: str) -> None:
    scene = _unreadable_inputs(tmp_path)[extension]
    refs, cache = _references(tmp_path), str(tmp_path / "cache")
    out = tmp_path / "out"
    done = graphflow_cli("run", str(GRAPHS / "preview_projection.yaml"), "--input", f"scene={scene}",
                         "--input", f"references={refs}", "--out", str(out), "--cache", cache, "-q", *PREVIEW,
                         cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "cannot be read" in line]
    assert len(said) == 1 and f"({extension}:" in said[0], done.stderr
    report = json.loads((out / "report.json").read_text())
    note = next(e["note"] for e in report["nodes"] if e["node"] == "scene")
    assert "cannot be read" in note and f"({extension}:" in note
    if validator_available():
        checked = validate_glb(out / "asset.glb")
        assert checked["issues"]["numErrors"] == 0 and checked["issues"]["numWarnings"] == 0, issue_summary(checked)

    baked = graphflow_cli("run", str(GRAPHS / "pbr_from_textured.yaml"), "--input", f"scene={scene}",
                          "--out", str(tmp_path / "baked"), "--cache", cache, "-q", cwd=tmp_path)
    assert baked.returncode == 2, baked.stderr[-3000:]
    error = next(line for line in baked.stderr.splitlines() if line.startswith("error:"))
    named = "poster.glb images[0]" if extension == "ktx2" else "missing.png"
    assert named in error and f"({extension}:" in error and "Traceback" not in baked.stderr, error


@pytest.mark.slow
def test_a_budget_stops_a_scene_in_the_wrong_unit_before_any_projection(tmp_path: Path) -> None:
    scene, refs = skeletons_glb(tmp_path / "skeletons.glb"), _references(tmp_path)
    start = time.perf_counter()
    stopped = graphflow_cli("run", str(GRAPHS / "preview_projection.yaml"), "--input", f"scene={scene}",
                            "--input", f"references={refs}", "--set", "scene.params.units=m", "--out",
                            str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "-q", cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    error = next(line for line in stopped.stderr.splitlines() if line.startswith("error:"))
    assert "'max_texels'" in error and "88.1 M atlas texels" in error and "scene.params.units" in error, error
    entries = json.loads((tmp_path / "out" / "report.json").read_text())["nodes"]
    assert not [e for e in entries if e["node"] in ("project", "brdf") and e["status"] == "ran"]
    assert {e["node"] for e in entries if e["status"] == "skipped"} >= {"brdf", "export", "preview"}
    assert seconds < 120, seconds  # load and segment only (about 10 s on 2 idle cores)

    demo = graphflow_cli("run", str(GRAPHS / "demo_room.yaml"), "--max-texels", "1000", "--out",
                         str(tmp_path / "demo"), "--cache", str(tmp_path / "cache"), "-q", cwd=tmp_path)
    assert demo.returncode == 2 and "max_texels = 0.0 M" in demo.stderr, demo.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mm_room", "tiny_spheres"])
def test_scenes_in_other_sizes_are_textured_with_a_valid_asset(tmp_path: Path, case: str) -> None:
    scene = demo_room_glb(tmp_path / "room.glb", "mm") if case == "mm_room" else tiny_spheres_glb(tmp_path / "s.glb")
    out = tmp_path / "out"
    done = graphflow_cli("run", str(GRAPHS / "preview_projection.yaml"), "--input", f"scene={scene}",
                         "--input", f"references={_references(tmp_path)}", "--out", str(out), "--cache",
                         str(tmp_path / "cache"), *PREVIEW[2:], cwd=tmp_path)  # the graph's own density
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    note = next(e["note"] for e in report["nodes"] if e["node"] == "scene")
    assert note.startswith("units: mm (auto:" if case == "mm_room" else "units: m (auto: the file's unit"), note
    assert report["plan"][0].startswith("project: 7 instance(s)" if case == "mm_room" else "project: 3 instance(s)")
    warned = [w for w in report["warnings"] if "too small for this density" in w]
    assert len(warned) == (1 if case == "tiny_spheres" else 0), report["warnings"]
    if validator_available():
        checked = validate_glb(out / "asset.glb")
        assert checked["issues"]["numErrors"] == 0 and checked["issues"]["numWarnings"] == 0, issue_summary(checked)
