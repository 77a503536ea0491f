"""Bad inputs through the real CLI (`python -m graphflow.cli` subprocesses): exit code 2, one plain
message naming the culprit, never a traceback (issue 8).

The table is run once per module, several subprocesses at a time (each CLI start imports torch
and the node catalogue, which dominates), then every case is checked as its own test.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from bad_files import (collapse_positions, edit_glb, png_bomb, png_bytes, set_index, set_json, set_position,
                       write, zero_faces)
from reliability_helpers import BOX, CHAIR, cli_command, cli_env

SCENE_GRAPH = """
graph: scene_refs
inputs:
  scene: {type: path, default: null}
  references: {type: path, default: null}
nodes:
  scene: {type: io.load_scene, inputs: {path: $inputs.scene}}
  segment: {type: segment.parts, inputs: {scene: scene}}
  bind: {type: refs.bind, inputs: {instances: segment, file: $inputs.references}}
outputs: {references: bind}
"""

TOY_GRAPH = """
graph: toy
nodes:
  c: {type: toy.const, params: {value: 3}}
  s: {type: toy.scale, inputs: {x: c}}
outputs: {scaled: s}
"""


@dataclass
class Case:
    args: list[str]
    culprits: list[str]  # every one must appear in stderr
    forbidden: list[str] = field(default_factory=list)  # none may appear in stderr


def _glb(root: Path, name: str, data: bytes) -> Path:
    return write(root / name / "scene.glb", data)


def build_cases(root: Path) -> dict[str, Case]:
    box = BOX.read_bytes()
    graph = write(root / "scene_refs.yaml", SCENE_GRAPH)
    toy = write(root / "toy.yaml", TOY_GRAPH)
    good_refs = write(root / "good" / "refs.yaml", "instances:\n  Mesh: {images: [red.png], material: wood}\n")
    write(root / "good" / "red.png", png_bytes())
    not_a_dir = write(root / "a_file", "I am a file, not a directory\n")

    def scene_case(name: str, data: bytes, culprits: list[str], *extra: str, suffix: str = "scene.glb") -> Case:
        path = write(root / name / suffix, data)
        return Case(["run", str(graph), "-q", "--input", f"scene={path}", "--input", f"references={good_refs}",
                     *extra], ["node 'scene'", str(path), *culprits])

    def refs_case(name: str, refs_text: str | None, files: dict[str, bytes], culprits: list[str],
                  *extra: str) -> Case:
        folder = root / name
        for fname, data in files.items():
            write(folder / fname, data)
        refs = folder / "refs.yaml"
        if refs_text is not None:
            write(refs, refs_text)
        return Case(["run", str(graph), "-q", "--input", f"scene={BOX}", "--input", f"references={refs}", *extra],
                    ["node 'bind'", *culprits])

    def graph_case(name: str, text: str, culprits: list[str], *extra: str, command: str = "run") -> Case:
        path = write(root / name / "graph.yaml", text)
        return Case([command, str(path), "-q", *extra] if command == "run" else [command, str(path), *extra],
                    culprits)

    cases: dict[str, Case] = {
        # ---- the graph file and the command line
        "graph file missing": Case(["run", str(root / "nope.yaml")], ["nope.yaml"]),
        "malformed YAML": graph_case("malformed", "nodes:\n  a: {type: toy.const\n  b: [\n", ["malformed YAML", "line"]),
        "YAML tab indentation": graph_case("tabs", "nodes:\n\ta: {type: toy.const}\n", ["malformed YAML"]),
        "graph is a list": graph_case("list", "- a\n- b\n", ["mapping"]),
        "python object tag": graph_case("pytag", "nodes: !!python/object/apply:os.system ['echo PWNED']\n",
                                        ["malformed YAML"]),
        "unknown top-level key": graph_case("topkey", TOY_GRAPH + "extras: 1\n", ["extras"]),
        "unknown node type": graph_case("unknown_type", "nodes:\n  a: {type: toy.nothing}\n",
                                        ["node 'a'", "toy.nothing"]),
        "bad param value (range)": graph_case(
            "range", "nodes:\n  c: {type: toy.const, params: {size: 0}}\noutputs: {c: c}\n",
            ["node 'c'", "size", "greater than or equal to 1"]),
        "bad param value (enum)": graph_case(
            "enum", SCENE_GRAPH.replace("inputs: {scene: scene}", "params: {by: colour}, inputs: {scene: scene}"),
            ["node 'segment'", "by", "'node'", "'component'"]),
        "bad param type": graph_case("ptype", "nodes:\n  c: {type: toy.const, params: {value: lots}}\noutputs: {c: c}\n",
                                     ["node 'c'", "value", "number"]),
        "unknown param": graph_case("unknown_param",
                                    "nodes:\n  c: {type: toy.const, params: {colour: red}}\noutputs: {c: c}\n",
                                    ["node 'c'", "colour"]),
        "--set out of range": Case(["run", str(toy), "-q", "--set", "c.params.size=-5"],
                                   ["node 'c'", "size", "greater than or equal to 1"]),
        "--set unknown node": Case(["run", str(toy), "-q", "--set", "zz.params.size=2"], ["zz"]),
        "port type mismatch": graph_case(
            "ports", "nodes:\n  sp: {type: toy.split}\n  c: {type: toy.const}\n"
                     "  t: {type: toy.total, inputs: {xs: c}}\noutputs: {t: t}\n",
            ["node 't'", "xs", "Tensor", "Keyed"]),
        "unconnected required input": graph_case("unconnected", "nodes:\n  s: {type: toy.scale}\noutputs: {s: s}\n",
                                                 ["node 's'", "'x'"]),
        "link to unknown node": graph_case("dangling", "nodes:\n  s: {type: toy.scale, inputs: {x: ghost}}\n"
                                                       "outputs: {s: s}\n", ["node 's'", "ghost"]),
        "cycle": graph_case("cycle", "nodes:\n  a: {type: toy.scale, inputs: {x: b}}\n"
                                     "  b: {type: toy.scale, inputs: {x: a}}\noutputs: {a: a}\n",
                            ["cycle", "a", "b"]),
        "unknown graph input in YAML": graph_case(
            "unknown_input_yaml", "nodes:\n  s: {type: toy.scale, inputs: {x: $inputs.nothing}}\noutputs: {s: s}\n",
            ["nothing"]),
        "unknown graph input on the CLI": Case(["run", str(toy), "-q", "--input", "zzz=1"], ["zzz"]),
        "missing required graph input": Case(["run", str(graph), "-q"], ["scene"]),
        "validate reports every problem": graph_case(
            "many", "nodes:\n  a: {type: toy.nothing}\n  c: {type: toy.const, params: {size: 0}}\n"
                    "  s: {type: toy.scale}\noutputs: {a: a}\n",
            ["toy.nothing", "size", "node 's'", "3 problem"], command="validate"),
        # ---- scene files
        "missing scene file": Case(["run", str(graph), "-q", "--input", f"scene={root / 'no_such.glb'}",
                                    "--input", f"references={good_refs}"], ["no_such.glb"]),
        "scene is a directory": Case(["run", str(graph), "-q", "--input", f"scene={root}",
                                      "--input", f"references={good_refs}"], [str(root)]),
        "unknown scene format": scene_case("stl", b"solid x\nendsolid x\n", [".stl"], suffix="scene.stl"),
        "empty glb": scene_case("empty", b"", ["header"]),
        "truncated glb": scene_case("truncated", box[: len(box) // 2], ["truncated"]),
        "glb bad magic": scene_case("magic", b"glTX" + box[4:], ["magic"]),
        "glb wrong total length": scene_case("total_length", box[:8] + (len(box) + 400).to_bytes(4, "little")
                                             + box[12:], ["length"]),
        "glb chunk length past the end": scene_case("chunk_length", box[:12] + (10**7).to_bytes(4, "little")
                                                    + box[16:], ["past the end"]),
        "accessor index out of range": scene_case(
            "accessor_oor", edit_glb(box, set_json("meshes.0.primitives.0.attributes.POSITION", 42)), ["accessors[42]"]),
        "accessor past its bufferView": scene_case(
            "accessor_offset", edit_glb(box, set_json("accessors.1.byteOffset", 100_000)), ["bytes"]),
        "vertex index out of range": scene_case("index_oor", edit_glb(box, set_index(60_000)), ["out of range"]),
        "NaN position": scene_case("nan", edit_glb(box, set_position(float("nan"))), ["NaN"]),
        "infinite position": scene_case("inf", edit_glb(box, set_position(float("inf"))), ["infinite"]),
        "zero faces": scene_case("zero_faces", edit_glb(box, zero_faces), ["count 0"]),
        "degenerate triangles": scene_case("degenerate", edit_glb(box, collapse_positions), ["no usable triangles"]),
        "scene over max_faces": scene_case("too_large", box, ["max_faces"], "--set", "scene.params.max_faces=4"),
        "gltf not JSON": scene_case("gltf_json", b'{"asset": {"version": "2.0"}, "meshes": [', ["JSON"],
                                    suffix="scene.gltf"),
        "gltf missing .bin": scene_case("gltf_bin", CHAIR.read_bytes() if CHAIR.exists() else b"{}",
                                        ["SheenChair.bin" if CHAIR.exists() else "mesh"], suffix="scene.gltf"),
        # ---- references
        "missing references file": Case(["run", str(graph), "-q", "--input", f"scene={BOX}", "--input",
                                          f"references={root / 'no_refs.yaml'}"], ["node 'bind'", "no_refs.yaml"]),
        "references malformed YAML": refs_case("refs_yaml", "instances: {Mesh: [a.png\n", {}, ["malformed YAML"]),
        "references name no known instance": refs_case(
            "refs_unknown", "instances:\n  Sofa: {images: [red.png]}\n", {"red.png": png_bytes()}, ["Sofa", "Mesh"]),
        "reference image missing": refs_case("img_missing", "instances:\n  Mesh: gone.png\n", {}, ["gone.png"]),
        "reference image corrupt": refs_case("img_corrupt", "instances:\n  Mesh: bad.png\n",
                                             {"bad.png": png_bytes()[:40]}, ["bad.png"]),
        "reference not an image": refs_case("img_text", "instances:\n  Mesh: notes.png\n",
                                            {"notes.png": b"these are my notes, not a picture\n"}, ["notes.png"]),
        "reference image over max_pixels": refs_case(
            "img_limit", "instances:\n  Mesh: big.png\n", {"big.png": png_bytes(64, 64)},
            ["big.png", "max_pixels"], "--set", "bind.params.max_pixels=100"),
        "decompression bomb (100k x 100k)": refs_case(
            "bomb_huge", "instances:\n  Mesh: bomb.png\n", {"bomb.png": png_bomb(100_000, 100_000)}, ["bomb.png"]),
        "decompression bomb (12k x 12k)": refs_case(
            "bomb", "instances:\n  Mesh: bomb.png\n", {"bomb.png": png_bomb(12_000, 12_000)},
            ["bomb.png", "pixels"]),
        # ---- output and cache locations
        "unwritable output dir": Case(["run", str(toy), "-q", "--out", str(not_a_dir / "out")],
                                      ["output directory", str(not_a_dir)]),
        "unwritable cache dir": Case(["run", str(toy), "-q", "--cache", str(not_a_dir / "cache")],
                                     ["cache", str(not_a_dir)]),
        "unwritable cache dir (env)": Case(["run", str(toy), "-q"], ["cache", str(not_a_dir)]),
    }
    return cases


ENV_OVERRIDES: dict[str, dict[str, str]] = {"unwritable cache dir (env)": {"GRAPHFLOW_CACHE": "{root}/a_file/c"}}


@dataclass
class Outcome:
    returncode: int | str
    stdout: str
    stderr: str


def _case_env(root: Path, name: str) -> tuple[Path, dict[str, str]]:
    folder = root / "runs" / name.replace(" ", "_").replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    env = {"GRAPHFLOW_CACHE": str(folder / "cache")}
    env.update({k: v.format(root=root) for k, v in ENV_OVERRIDES.get(name, {}).items()})
    return folder, env


def _run_case(root: Path, name: str, case: Case) -> Outcome:
    folder, env = _case_env(root, name)
    res = subprocess.run(cli_command(*case.args), capture_output=True, text=True, cwd=folder,
                         env=cli_env(None, env), timeout=600)
    return Outcome(res.returncode, res.stdout, res.stderr)


def _run_batch(root: Path, cases: dict[str, Case]) -> dict[str, Outcome]:
    """Every case through `graphflow.cli.main` in one interpreter (see cli_batch.py)."""
    spec = {}
    for name, case in cases.items():
        _, env = _case_env(root, name)
        spec[name] = {"args": case.args, "env": env}
    (root / "cases.json").write_text(json.dumps(spec))
    res = subprocess.run([sys.executable, str(Path(__file__).with_name("cli_batch.py")), str(root / "cases.json"),
                          str(root / "results.json")], capture_output=True, text=True, cwd=root, env=cli_env(None),
                         timeout=900)
    assert res.returncode == 0, f"the batch driver failed:\n{res.stderr[-4000:]}"
    got = json.loads((root / "results.json").read_text())
    return {name: Outcome(r["code"], r["stdout"], r["stderr"]) for name, r in got.items()}


def _table(tmp_path_factory: pytest.TempPathFactory, separate_processes: bool) -> dict[str, tuple[Case, Outcome]]:
    if not BOX.exists():
        pytest.skip(f"shared asset {BOX} is absent (expected ../shared/assets next to the repository)")
    root = tmp_path_factory.mktemp("bad_inputs")
    cases = build_cases(root)
    if separate_processes:
        cases = {name: cases[name] for name in PROCESS_CASES}
    else:
        outcomes = _run_batch(root, cases)
        return {name: (cases[name], outcomes[name]) for name in cases}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_case, root, name, case) for name, case in cases.items()}
        return {name: (cases[name], fut.result()) for name, fut in futures.items()}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Outcome]]:
    return _table(tmp_path_factory, separate_processes=False)


@pytest.fixture(scope="module")
def table_processes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Outcome]]:
    return _table(tmp_path_factory, separate_processes=True)


# kept in sync with build_cases (test_table_is_complete) so that each case is its own test id
CASE_NAMES = sorted([
    "graph file missing", "malformed YAML", "YAML tab indentation", "graph is a list", "python object tag",
    "unknown top-level key", "unknown node type", "bad param value (range)", "bad param value (enum)",
    "bad param type", "unknown param", "--set out of range", "--set unknown node", "port type mismatch",
    "unconnected required input", "link to unknown node", "cycle", "unknown graph input in YAML",
    "unknown graph input on the CLI", "missing required graph input", "validate reports every problem",
    "missing scene file", "scene is a directory", "unknown scene format", "empty glb", "truncated glb",
    "glb bad magic", "glb wrong total length", "glb chunk length past the end", "accessor index out of range",
    "accessor past its bufferView", "vertex index out of range", "NaN position", "infinite position", "zero faces",
    "degenerate triangles", "scene over max_faces", "gltf not JSON", "gltf missing .bin", "missing references file",
    "references malformed YAML", "references name no known instance", "reference image missing",
    "reference image corrupt", "reference not an image", "reference image over max_pixels",
    "decompression bomb (100k x 100k)", "decompression bomb (12k x 12k)", "unwritable output dir",
    "unwritable cache dir", "unwritable cache dir (env)",
])


def test_table_is_complete(table: dict[str, Any]) -> None:
    assert sorted(table) == CASE_NAMES
    assert len(table) >= 25


def check_user_error(result: Any, culprits: list[str], what: str) -> None:
    stderr = result.stderr
    assert result.returncode == 2, f"{what}: exit {result.returncode}\n{stderr}"
    assert "Traceback" not in stderr, f"{what}: traceback on stderr\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors, f"{what}: no 'error:' line\n{stderr}"
    missing = [c for c in culprits if c not in stderr]
    assert not missing, f"{what}: message does not name {missing}\n{stderr}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_a_user_error(table: dict[str, tuple[Case, Outcome]], name: str) -> None:
    case, result = table[name]
    check_user_error(result, case.culprits, name)
    assert "PWNED" not in result.stdout + result.stderr


# one case per kind of culprit, each as `python -m graphflow.cli ...` (what a user runs); the batch
# driver above sends the whole table through the same `main()` in one interpreter
PROCESS_CASES = [
    "graph file missing", "malformed YAML", "python object tag", "unknown node type", "bad param value (range)",
    "port type mismatch", "cycle", "unknown graph input on the CLI", "missing scene file", "glb bad magic",
    "NaN position", "scene over max_faces", "references name no known instance", "reference not an image",
    "decompression bomb (100k x 100k)", "unwritable output dir", "unwritable cache dir (env)",
]


@pytest.mark.slow
def test_bad_inputs_each_in_its_own_process(table_processes: dict[str, tuple[Case, Outcome]]) -> None:
    failures = []
    for name in PROCESS_CASES:
        case, result = table_processes[name]
        try:
            check_user_error(result, case.culprits, name)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------- a full disk while writing the cache

BIG_TOY = """
graph: big
nodes:
  c: {type: toy.const, params: {value: 1.5, size: 600000}}
  s: {type: toy.scale, inputs: {x: c}}
outputs: {scaled: s}
"""


def _fsize_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_file_size_limit_while_writing_the_cache(tmp_path: Path) -> None:
    graph = write(tmp_path / "big.yaml", BIG_TOY)
    cache = tmp_path / "cache"
    res = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(cache)), capture_output=True, text=True,
                         cwd=tmp_path, env=cli_env(cache), timeout=300, preexec_fn=_fsize_limit(1 << 20))
    check_user_error(res, ["disk is full", str(cache)], "RLIMIT_FSIZE")
    # nothing half-written is left as an entry: a normal re-run succeeds and reads back whole entries
    again = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(cache)), capture_output=True,
                           text=True, cwd=tmp_path, env=cli_env(cache), timeout=300)
    assert again.returncode == 0, again.stderr
    assert not list((cache / "tmp").iterdir()), "temporary files left behind in the cache"


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting a tmpfs needs root on Linux")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_while_writing_the_cache(tmp_path: Path, small_tmpfs: Path) -> None:
    graph = write(tmp_path / "big.yaml", BIG_TOY)
    cache = small_tmpfs / "cache"
    res = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(cache)), capture_output=True, text=True,
                         cwd=tmp_path, env=cli_env(cache), timeout=300)
    check_user_error(res, ["disk is full", str(cache)], "full tmpfs")
    assert not list((cache / "tmp").iterdir()), "temporary files left behind on the full disk"


def test_read_only_output_and_cache(tmp_path: Path) -> None:
    """A read-only file system (root ignores permission bits, so a ro mount is the honest test)."""
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip("mounting needs root on Linux")
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {made.stderr.decode().strip()}")
    try:
        graph = write(tmp_path / "toy.yaml", TOY_GRAPH)
        res = subprocess.run(cli_command("run", str(graph), "-q", "--out", str(mount / "out")), capture_output=True,
                             text=True, cwd=tmp_path, env=cli_env(tmp_path / "cache"), timeout=300)
        check_user_error(res, ["output directory", str(mount / "out"), "Read-only"], "read-only --out")
        res = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(mount / "c")), capture_output=True,
                             text=True, cwd=tmp_path, env=cli_env(tmp_path / "cache"), timeout=300)
        check_user_error(res, ["cache", str(mount / "c"), "Read-only"], "read-only --cache")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
