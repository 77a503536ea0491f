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
