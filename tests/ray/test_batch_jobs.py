"""The batch family's plain functions: finding scene jobs, their digests, the archive."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from graphflow import FileBlob, Keyed, UserError
from graphflow.fingerprint import fingerprint
from nodes.batch.archive import zip_blobs
from nodes.batch.jobs import scan_scene_folder
from nodes.batch.pipeline import load_pipeline

REPO = Path(__file__).resolve().parents[2]
TENT = "o tent\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def make_folders(root: Path) -> tuple[Path, Path]:
    scenes, refs = root / "scenes", root / "refs"
    scenes.mkdir()
    refs.mkdir()
    (scenes / "b_tent.obj").write_text(TENT)
    (scenes / "a_tent.obj").write_text(TENT.replace("0 1 0", "0 2 0"))
    (scenes / "notes.txt").write_text("not a scene")
    (refs / "a_tent.yaml").write_text("default: {material: wood}\n")
    (refs / "b_tent.yml").write_text("default: {material: metal}\n")
    return scenes, refs


def test_jobs_are_sorted_paired_and_keyed_by_content(tmp_path: Path) -> None:
    scenes, refs = make_folders(tmp_path)
    jobs = scan_scene_folder(scenes, refs)
    assert list(jobs) == ["a_tent", "b_tent"]
    assert jobs["b_tent"].references == (refs / "b_tent.yml").resolve()
    # moving the catalogue keeps every digest (content, not paths)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "scenes", moved / "scenes")
    shutil.copytree(tmp_path / "refs", moved / "refs")
    again = scan_scene_folder(moved / "scenes", moved / "refs")
    assert {k: fingerprint(v) for k, v in jobs.items()} == {k: fingerprint(v) for k, v in again.items()}
    # editing one references file changes that job's digest only
    (moved / "refs" / "a_tent.yaml").write_text("default: {material: fabric}\n")
    edited = scan_scene_folder(moved / "scenes", moved / "refs")
    assert fingerprint(edited["a_tent"]) != fingerprint(jobs["a_tent"])
    assert fingerprint(edited["b_tent"]) == fingerprint(jobs["b_tent"])


def test_folder_errors_name_the_culprit(tmp_path: Path) -> None:
    scenes, refs = make_folders(tmp_path)
    (refs / "b_tent.yml").unlink()
    with pytest.raises(UserError, match="scene 'b_tent' has no references file"):
        scan_scene_folder(scenes, refs)
    assert list(scan_scene_folder(scenes, refs, require_references=False)) == ["a_tent", "b_tent"]
    with pytest.raises(UserError, match="does not exist"):
        scan_scene_folder(tmp_path / "nope", refs)
    with pytest.raises(UserError, match="no scene files"):
        scan_scene_folder(refs, None)
    (scenes / "a_tent.glb").write_bytes(b"glTF")
    with pytest.raises(UserError, match="two scenes are named 'a_tent'"):
        scan_scene_folder(scenes, None)


def test_archive_is_deterministic_and_sorted() -> None:
    blobs = Keyed({"z": FileBlob(b"zz", ".glb"), "a": FileBlob(b"a", ".glb")})
    data = zip_blobs(blobs, "assets/")
    assert data == zip_blobs(Keyed({"a": blobs["a"], "z": blobs["z"]}), "assets/")
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["assets/a.glb", "assets/z.glb"]
        assert archive.read("assets/z.glb") == b"zz"


def test_pipeline_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml", [])
    no_scene = tmp_path / "g.yaml"
    no_scene.write_text("graph: g\nnodes:\n  room: {type: io.demo_room}\noutputs: {r: room.scene}\n")
    with pytest.raises(UserError, match="no `scene` input"):
        load_pipeline(no_scene, [])
    with pytest.raises(UserError, match="unknown node 'nope'"):
        load_pipeline(REPO / "graphs" / "batch_texture_scene.yaml", ["nope.params.steps=2"])
    graph = load_pipeline(REPO / "graphs" / "batch_texture_scene.yaml", ["semantic.params.steps=3"])
    assert graph.nodes["semantic"].params["steps"] == 3


def test_batch_key_follows_the_versions_of_the_pipeline_nodes(tmp_path: Path, monkeypatch) -> None:
    """Bumping the version of a node type the nested pipeline runs changes every scene's key (the
    scenes re-run); bumping one it does not run changes nothing."""
    from graphflow import Graph, registry
    from graphflow.keys import KeyBuilder

    scenes, refs = make_folders(tmp_path)
    graph = Graph.from_yaml(REPO / "graphs" / "batch_texture.yaml")
    inputs = graph.resolve_inputs({"scenes": scenes, "references": refs})

    def texture_keys() -> dict[str, str]:
        keys = KeyBuilder(graph, inputs)
        jobs = scan_scene_folder(scenes, refs)  # what the `jobs` node outputs
        keys.record("jobs", None, {"out": fingerprint(jobs)}, {"out": {k: fingerprint(v) for k, v in jobs.items()}})
        params = graph.node_class("texture").Params.model_validate(graph.nodes["texture"].params)
        return {item: keys.key_parts("texture", params, item).key() for item in keys.items_of("texture")}

    before = texture_keys()
    pipeline = Graph.from_yaml(REPO / "graphs" / "batch_texture_scene.yaml")
    used = {spec.type for spec in pipeline.nodes.values()}
    assert set(graph.node_class("texture")().nested_versions("pipeline", inputs["pipeline"])) == used
    unused = next(name for name in registry.names() if name not in used and name != "batch.texture_scene")
    monkeypatch.setattr(registry.get(unused), "version", registry.get(unused).version + 1)
    assert texture_keys() == before
    bumped = registry.get(sorted(used)[0])
    monkeypatch.setattr(bumped, "version", bumped.version + 1)
    after = texture_keys()
    assert set(after) == set(before) == {"a_tent", "b_tent"}
    assert all(after[k] != before[k] for k in before)


def test_the_node_layer_does_not_import_the_cli() -> None:
    import subprocess
    import sys

    code = "import sys, nodes.batch.nodes, nodes.catalog; print('graphflow.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


PIPELINE = """
graph: tiny_pipeline
inputs:
  scene: {type: path, default: null}
  references: {type: path, default: null}
nodes:
  size: {type: toy.table, inputs: {path: $inputs.scene}}
  file: {type: toy.save, inputs: {x: size}}
outputs: {file: file}
"""
BATCH = """
graph: tiny_batch
inputs:
  scenes: {type: path, default: scenes}
  references: {type: path, default: refs}
  pipeline: {type: path, default: pipeline.yaml}
nodes:
  jobs: {type: io.scene_folder, inputs: {folder: $inputs.scenes, references: $inputs.references}}
  texture: {type: batch.texture_scene, inputs: {jobs: jobs, pipeline: $inputs.pipeline}}
  archive: {type: batch.archive, inputs: {files: texture}}
outputs: {assets: archive}
"""


def test_batch_run_caches_per_scene_and_explains_its_nested_versions(tmp_path: Path, cli) -> None:
    make_folders(tmp_path)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    (tmp_path / "batch.yaml").write_text(BATCH)
    env = {"GRAPHFLOW_PLUGINS": "helpers.toy_plugin,nodes.batch.nodes"}
    first = cli("run", str(tmp_path / "batch.yaml"), "--out", str(tmp_path / "o1"), env=env)
    assert first.returncode == 0, first.stderr
    with zipfile.ZipFile(tmp_path / "o1" / "assets.zip") as archive:
        assert archive.namelist() == ["a_tent.bin", "b_tent.bin"]
    account = cli("explain", str(tmp_path / "batch.yaml"), "texture", "--item", "a_tent", env=env)
    assert account.returncode == 0, account.stderr
    assert "nested   toy.save v1, toy.table v1" in account.stdout
    assert "same key as the last run" in account.stdout
    (tmp_path / "scenes" / "b_tent.obj").write_text(TENT + "v 0 0 1\n")
    second = cli("run", str(tmp_path / "batch.yaml"), "--out", str(tmp_path / "o2"), env=env)
    assert second.returncode == 0, second.stderr
    assert "texture[b_tent] ran in" in second.stderr and "texture[a_tent]" not in second.stderr
