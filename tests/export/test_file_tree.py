"""The engine's several-files value: FileTree through the codec, the disk cache, the CLI's --out and report.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphflow import FileBlob, FileTree, UserError
from graphflow.cli import _write_outputs, output_entries

HERE = Path(__file__).resolve().parent
GRAPH = """
graph: tree
nodes:
  one: {type: test.tree, params: {stem: doc}}
  two: {type: test.tree, params: {stem: other, text: bye}}
outputs: {first: one, second: two}
"""


@pytest.fixture
def tree_cli(cli_factory):
    return cli_factory(plugins="tree_nodes", extra_path=[HERE])


def test_file_tree_round_trips_through_the_codec() -> None:
    tree = FileTree(files={"a.mtlx": b"<x/>", "a_textures/b c.png": b"\x89PNG" + bytes(300), "empty": b""},
                    summary={"names": {"2 seat": "_2_seat"}})
    tensors, meta = tree.to_tensors()
    back = FileTree.from_tensors(tensors, meta)
    assert back == tree and list(back.files) == list(tree.files)


@pytest.mark.parametrize("path", ["", "/abs.png", "../up.png", "a/../b", "a//b", "./a", "c:/x", "a\\b"])
def test_file_tree_refuses_paths_that_leave_the_folder(path: str) -> None:
    with pytest.raises(ValueError, match="must be relative"):
        FileTree(files={path: b""})


def test_cli_writes_trees_under_out_caches_them_and_reports_summaries(tmp_path: Path, tree_cli) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    out = tmp_path / "out"
    first = tree_cli("run", str(graph), "--out", str(out), "-q")
    assert first.returncode == 0, first.stderr
    assert (out / "doc.txt").read_text() == "hello -> doc_files/data.bin\n"
    assert (out / "doc_files" / "data.bin").read_bytes() == bytes(range(256)) * 4
    assert (out / "other.txt").read_text().startswith("bye")
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"]["first"] == {"files": ["doc.txt", "doc_files/data.bin"], "bytes": 1052,
                                          "summary": {"names": {"my sofa": "my_sofa"}, "stem": "doc"}}
    again = tree_cli("run", str(graph), "--out", str(tmp_path / "again"), "-q")  # a new process: the disk cache
    assert again.returncode == 0, again.stderr
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert {n["status"] for n in report["nodes"]} == {"cached"}
    assert (tmp_path / "again" / "doc_files" / "data.bin").read_bytes() == bytes(range(256)) * 4


def test_two_outputs_writing_one_file_is_a_user_error(tmp_path: Path, tree_cli) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH.replace("stem: other", "stem: DOC"))  # doc.txt vs DOC.txt: one file on macOS/Windows
    res = tree_cli("run", str(graph), "--out", str(tmp_path / "out"), "-q")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "outputs 'first' and 'second' both write 'doc.txt'" in res.stderr, res.stderr


def test_unwritable_out_exits_2_naming_it(tmp_path: Path, tree_cli) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / "a_file" / "out"
    res = tree_cli("run", str(graph), "--out", str(target), "-q")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert str(target) in res.stderr and "output directory" in res.stderr, res.stderr


def test_write_error_inside_out_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "doc_files").mkdir(parents=True)
    (out / "doc_files" / "data.bin").mkdir()  # a folder where the file goes
    tree = FileTree(files={"doc.txt": b"x", "doc_files/data.bin": b"y"})
    with pytest.raises(UserError, match="cannot write output 'first'") as info:
        _write_outputs({"first": tree}, out)
    assert "data.bin" in str(info.value)
    entries = output_entries({"first": tree, "asset": FileBlob(b"glb", ".glb", {"instances": 1}), "n": 3})
    assert entries["asset"] == {"files": ["asset.glb"], "bytes": 3, "summary": {"instances": 1}}
    assert set(entries) == {"first", "asset"}
