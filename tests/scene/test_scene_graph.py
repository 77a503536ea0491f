"""The scene nodes inside real graphs: the scheduler, the cache, the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image
from scene_builders import GltfDoc, cube_prim

import graphflow as gf
import nodes.catalog  # noqa: F401 - registers the nodes
from graphflow import Graph
from graphflow.fingerprint import fingerprint

GRAPH = """
graph: scene_refs
inputs:
  scene: {type: path, default: null}
  references: {type: path, default: null}
nodes:
  load: {type: io.load_scene, inputs: {path: $inputs.scene}}
  segment: {type: segment.parts, params: {by: node}, inputs: {scene: load}}
  bind: {type: refs.bind, params: {image_size: 16}, inputs: {instances: segment, file: $inputs.references}}
outputs: {refs: bind, instances: segment}
"""

DEMO = """
graph: demo
nodes:
  room: {type: io.demo_room, params: {reference_size: 32}}
  segment: {type: segment.parts, inputs: {scene: room.scene}}
  bind: {type: refs.bind, inputs: {instances: segment, references: room.references}}
outputs: {refs: bind}
"""


def scene_folder(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    a, b = cube_prim("oak"), cube_prim("velvet")
    doc = GltfDoc(meshes=[[a], [b]], nodes=[{"name": "table", "mesh": 0}, {"name": "sofa", "mesh": 1,
                                                                            "translation": [2, 0, 0]}])
    (tmp_path / "room.glb").write_bytes(doc.glb())
    Image.new("RGB", (20, 20), (150, 100, 50)).save(tmp_path / "oak.png")
    Image.new("RGB", (20, 20), (150, 20, 20)).save(tmp_path / "velvet.png")
    (tmp_path / "refs.yaml").write_text("instances:\n  table: oak.png\n  sofa: {images: velvet.png, material: fabric}\n")
    return tmp_path


def test_editing_one_reference_image_reruns_only_bind_and_changes_one_item(tmp_path: Path) -> None:
    folder = scene_folder(tmp_path / "data")
    graph = Graph.from_yaml(GRAPH)
    inputs = {"scene": folder / "room.glb", "references": folder / "refs.yaml"}
    first = gf.run(graph, inputs, cache=tmp_path / "cache")
    assert list(first.outputs["refs"]) == ["table", "sofa"]
    assert first.outputs["refs"]["sofa"].material == "fabric"
    again = gf.run(graph, inputs, cache=tmp_path / "cache")
    assert all(e.status == "cached" for e in again.report.entries)
    Image.new("RGB", (20, 20), (90, 60, 30)).save(folder / "oak.png")  # the YAML file itself is unchanged
    edited = gf.run(graph, inputs, cache=tmp_path / "cache")
    statuses = {e.node: e.status for e in edited.report.entries}
    assert statuses["bind"] == "ran" and statuses["load"] == "cached"
    before, after = first.outputs["refs"], edited.outputs["refs"]
    assert fingerprint(before["sofa"]) == fingerprint(after["sofa"])
    assert fingerprint(before["table"]) != fingerprint(after["table"])


def test_demo_room_graph_runs(tmp_path: Path) -> None:
    result = gf.run(Graph.from_yaml(DEMO), cache=tmp_path / "cache")
    assert len(result.outputs["refs"]) >= 6


def test_cli_reports_a_bad_reference_entry_with_exit_2(tmp_path: Path) -> None:
    folder = scene_folder(tmp_path / "data")
    (folder / "refs.yaml").write_text("instances:\n  table: oak.png\n  lamp: oak.png\ndefault: {}\n")
    graph_file = tmp_path / "g.yaml"
    graph_file.write_text(GRAPH)
    proc = subprocess.run(
        [sys.executable, "-m", "graphflow.cli", "run", str(graph_file), "--input", f"scene={folder / 'room.glb'}",
         "--input", f"references={folder / 'refs.yaml'}", "--cache", str(tmp_path / "cache"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "lamp" in proc.stderr and "Traceback" not in proc.stderr
