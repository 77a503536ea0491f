"""Untrusted scene files: every corruption is a UserError naming the file, never another exception.

A table of targeted corruptions, then hypothesis fuzzing of Box.glb's bytes
and of SheenChair.gltf's JSON (issue 8). The default set runs a few hundred
cases; the `slow` variants run 2,000 per target.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scene_builders import GltfDoc, pack_glb, quad

from graphflow import UserError
from nodes.scene.loader import require_part_textures, load_scene
from nodes.types import Scene

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"
BOX = ASSETS / "Box" / "Box.glb"
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared asset {path} is absent (expected ../shared/assets next to the repository)")
    return path


def split_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    json_length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_length])
    bin_start = 20 + json_length
    bin_length = struct.unpack_from("<I", data, bin_start)[0]
    return doc, data[bin_start + 8:bin_start + 8 + bin_length]


def load_or_user_error(path: Path, **kwargs: Any) -> Scene | None:
    """The only allowed outcomes: a Scene, or a UserError that names the file."""
    try:
        return load_scene(path, **kwargs)
    except UserError as exc:
        assert exc.file, f"UserError without a file: {exc}"
        assert str(exc).strip()
        return None


# ---------------------------------------------------------------- targeted corruptions

def _box() -> tuple[dict[str, Any], bytes]:
    return split_glb(need(BOX).read_bytes())


def _json_edit(edit: Any) -> bytes:
    doc, blob = _box()
    edit(doc)
    return pack_glb(doc, blob)


def _bin_edit(edit: Any) -> bytes:
    doc, blob = _box()
    blob = bytearray(blob)
    edit(doc, blob)
    return pack_glb(doc, bytes(blob))


def _set(path: str, value: Any):
    def edit(doc: dict[str, Any]) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _position_value(value: float):
    def edit(doc: dict[str, Any], blob: bytearray) -> None:
        acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
        view = doc["bufferViews"][acc["bufferView"]]
        struct.pack_into("<f", blob, view.get("byteOffset", 0) + acc.get("byteOffset", 0) + 4, value)
    return edit


def _index_value(value: int):
    def edit(doc: dict[str, Any], blob: bytearray) -> None:
        acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]
        view = doc["bufferViews"][acc["bufferView"]]
        struct.pack_into("<H", blob, view.get("byteOffset", 0) + acc.get("byteOffset", 0) + 2, value)
    return edit


def _all_positions_equal(doc: dict[str, Any], blob: bytearray) -> None:
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = doc["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", 12)
    for i in range(acc["count"]):
        struct.pack_into("<3f", blob, start + i * stride, 1.0, 2.0, 3.0)


def _cycle(doc: dict[str, Any]) -> None:
    doc["nodes"][1]["children"] = [0]


CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "empty file": (lambda: b"", "12-byte header"),
    "truncated header": (lambda: need(BOX).read_bytes()[:7], "12-byte header"),
    "truncated body": (lambda: need(BOX).read_bytes()[:-100], "truncated"),
    "truncated chunk header": (lambda: need(BOX).read_bytes()[:16], "truncated"),
    "bad magic": (lambda: b"gLTF" + need(BOX).read_bytes()[4:], "magic"),
    "container version 1": (lambda: need(BOX).read_bytes()[:4] + struct.pack("<I", 1) + need(BOX).read_bytes()[8:],
                             "version"),
    "trailing bytes": (lambda: need(BOX).read_bytes() + b"\0\0\0\0", "trailing"),
    "chunk length past the end": (lambda: need(BOX).read_bytes()[:12] + struct.pack("<I", 10**6)
                                  + need(BOX).read_bytes()[16:], "past the end"),
    "JSON chunk not JSON": (lambda: pack_glb({}, b"").replace(b"{}", b"{]", 1), "malformed"),
    "asset version 1.0": (lambda: _json_edit(_set("asset.version", "1.0")), "glTF 2.0"),
    "accessor offset past view": (lambda: _json_edit(_set("accessors.1.byteOffset", 10_000)), "bytes"),
    "bufferView past buffer": (lambda: _json_edit(_set("bufferViews.0.byteLength", 10**7)), "buffers[0]"),
    "buffer longer than BIN chunk": (lambda: _json_edit(_set("buffers.0.byteLength", 10**6)), "truncated"),
    "accessor index out of range": (lambda: _json_edit(_set("meshes.0.primitives.0.attributes.POSITION", 99)),
                                    "accessors[99]"),
    "negative accessor index": (lambda: _json_edit(_set("meshes.0.primitives.0.indices", -1)), "accessors[-1]"),
    "bad componentType": (lambda: _json_edit(_set("accessors.1.componentType", 5127)), "componentType"),
    "float indices": (lambda: _json_edit(_set("accessors.0.componentType", 5126)), "componentType"),
    "wrong accessor type": (lambda: _json_edit(_set("accessors.1.type", "VEC2")), "type"),
    "count as text": (lambda: _json_edit(_set("accessors.1.count", "many")), "count"),
    "huge count": (lambda: _json_edit(_set("accessors.1.count", 10**12)), "max_faces"),
    "stride too small": (lambda: _json_edit(_set("bufferViews.1.byteStride", 4)), "byteStride"),
    "NaN position": (lambda: _bin_edit(_position_value(math.nan)), "NaN"),
    "infinite position": (lambda: _bin_edit(_position_value(math.inf)), "NaN or infinite"),
    "index out of range": (lambda: _bin_edit(_index_value(999)), "out of range"),
    "all triangles degenerate": (lambda: _bin_edit(_all_positions_equal), "no usable triangles"),
    "node cycle": (lambda: _json_edit(_cycle), "twice"),
    "NaN in a node matrix": (lambda: _json_edit(_set("nodes.0.matrix", [math.nan] * 16)), "matrix"),
    "singular node matrix": (lambda: _json_edit(_set("nodes.0.matrix", [0.0] * 16)), "singular"),
    "unknown primitive mode": (lambda: _json_edit(_set("meshes.0.primitives.0.mode", 9)), "mode"),
    "lines only": (lambda: _json_edit(_set("meshes.0.primitives.0.mode", 1)), "no triangle meshes"),
    "sparse accessor": (lambda: _json_edit(_set("accessors.1.sparse", {"count": 1, "indices": {}, "values": {}})),
                        "sparse"),
    "scene index out of range": (lambda: _json_edit(_set("scene", 5)), "scenes[5]"),
    "nodes not a list": (lambda: _json_edit(_set("nodes", {"a": 1})), "nodes"),
    "material index out of range": (lambda: _json_edit(_set("meshes.0.primitives.0.material", 7)), "materials[7]"),
    "buffer with a URL": (lambda: _json_edit(_set("buffers.0.uri", "http://example.com/x.bin")), "relative"),
    "missing external buffer": (lambda: _json_edit(_set("buffers.0.uri", "missing.bin")), "does not exist"),
    "corrupt base64 buffer": (lambda: _json_edit(_set("buffers.0.uri", "data:application/octet-stream;base64,@@")),
                              "base64"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corruption_is_a_user_error(tmp_path: Path, case: str) -> None:
    make, expected = CORRUPTIONS[case]
    path = tmp_path / "bad.glb"
    path.write_bytes(make())
    with pytest.raises(UserError) as err:
        load_scene(path)
    message = str(err.value)
    assert expected in message, message
    assert err.value.file and str(tmp_path) in err.value.file


def _textured_quad_gltf(tmp_path: Path, image_uri: str) -> Path:
    doc, blob = GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0}]).build()
    doc["buffers"][0]["uri"] = "q.bin"
    doc["images"] = [{"uri": image_uri}]
    doc["textures"] = [{"source": 0}]
    doc["materials"] = [{"name": "m", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    doc["meshes"][0]["primitives"][0]["material"] = 0
    (tmp_path / "q.bin").write_bytes(blob)
    path = tmp_path / "q.gltf"
    path.write_text(json.dumps(doc))
    return path


def test_texture_problems_name_the_image(tmp_path: Path) -> None:
    """A missing, corrupt or oversized source image does not stop the load (issue 23): the part records it,
    and a node that reads source textures raises naming the image file."""
    Image.new("RGB", (8, 4), (255, 0, 0)).save(tmp_path / "ok.png")
    scene = load_scene(_textured_quad_gltf(tmp_path, "ok.png"))
    assert scene.part_textures[0] is not None and scene.part_textures[0].shape == (3, 4, 8)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    for uri, max_pixels, said in (("gone.png", 10**8, "does not exist"), ("bad.png", 10**8, "not a readable image"),
                                  ("ok.png", 10, "over the limit")):
        scene = load_scene(_textured_quad_gltf(tmp_path, uri), max_pixels=max_pixels)
        assert scene.part_textures[0] is None and said in scene.part_info[0]["unreadable_texture"]["reason"]
        with pytest.raises(UserError) as err:
            require_part_textures(scene, [0])
        assert err.value.file.endswith(uri) and "png" in err.value.message


# ---------------------------------------------------------------- fuzzing

FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def quiet() -> Any:
    logger = logging.getLogger("graphflow.nodes.scene")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(previous)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def chair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SheenChair's .bin with tiny stand-in textures (decoding is not what this fuzzes)."""
    need(CHAIR)
    folder = tmp_path_factory.mktemp("chair")
    shutil.copy(CHAIR.parent / "SheenChair.bin", folder / "SheenChair.bin")
    for image in CHAIR.parent.glob("*.png"):
        Image.new("RGB", (4, 4), (120, 60, 30)).save(folder / image.name)
    return folder


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)
box_mutation = st.one_of(
    st.tuples(st.just("flip"), edits),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=16))),
    st.tuples(st.just("delete"), st.tuples(st.integers(0, 10**6), st.integers(1, 64))),
)


def mutate_bytes(data: bytes, mutation: tuple[str, Any]) -> bytes:
    kind, arg = mutation
    buf = bytearray(data)
    if kind == "flip":
        for position, value in arg:
            buf[position % len(buf)] = value
    elif kind == "truncate":
        del buf[arg % len(buf):]
    elif kind == "insert":
        position, blob = arg
        buf[position % len(buf):position % len(buf)] = blob
    else:
        position, count = arg
        del buf[position % len(buf):position % len(buf) + count]
    return bytes(buf)


def _fuzz_box(fuzz_dir: Path, mutation: tuple[str, Any]) -> None:
    path = fuzz_dir / "box.glb"
    path.write_bytes(mutate_bytes(need(BOX).read_bytes(), mutation))
    load_or_user_error(path)


REPLACEMENTS = st.one_of(
    st.integers(-3, 2**33), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["", "x", "SCALAR", "VEC3", "VEC4", "../x.bin", "data:,", "data:application/octet-stream;base64,AAAA"]),
    st.none(), st.booleans(), st.just([]), st.just({}), st.lists(st.integers(-2, 40), max_size=4),
    st.sampled_from([5120, 5121, 5122, 5123, 5125, 5126, 0, 1, 4, 5, 6]),
)
json_mutation = st.lists(st.tuples(st.integers(0, 10**6), st.one_of(st.just("delete"), REPLACEMENTS)),
                         min_size=1, max_size=3)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, prefix + (i,))
    return out


def mutate_json(doc: dict[str, Any], paths: list[tuple], mutation: list[tuple[int, Any]]) -> str:
    doc = copy.deepcopy(doc)
    for pick, value in mutation:
        path = paths[pick % len(paths)]
        if not path:
            continue
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if value == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif value != "delete":
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit changed the structure under this path
    return json.dumps(doc)


def _fuzz_chair(chair_dir: Path, mutation: list[tuple[int, Any]], raw: tuple[str, Any] | None) -> None:
    doc = json.loads(CHAIR.read_text())
    text = mutate_json(doc, _paths(doc), mutation)
    data = mutate_bytes(text.encode(), raw) if raw is not None else text.encode()
    path = chair_dir / "chair.gltf"
    path.write_bytes(data)
    # unwrap "never": xatlas on 26k triangles would dominate; UV handling is covered elsewhere.
    load_or_user_error(path, unwrap_mode="never")


@settings(max_examples=300, **FUZZ_SETTINGS)
@given(mutation=box_mutation)
def test_fuzz_box_glb_bytes(quiet: None, fuzz_dir: Path, mutation: tuple[str, Any]) -> None:
    _fuzz_box(fuzz_dir, mutation)


@settings(max_examples=100, **FUZZ_SETTINGS)
@given(mutation=json_mutation, raw=st.none() | box_mutation)
def test_fuzz_sheen_chair_json(quiet: None, chair_dir: Path, mutation: list, raw: tuple | None) -> None:
    _fuzz_chair(chair_dir, mutation, raw)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ_SETTINGS)
@given(mutation=box_mutation)
def test_fuzz_box_glb_bytes_2000(quiet: None, fuzz_dir: Path, mutation: tuple[str, Any]) -> None:
    _fuzz_box(fuzz_dir, mutation)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ_SETTINGS)
@given(mutation=json_mutation, raw=st.none() | box_mutation)
def test_fuzz_sheen_chair_json_2000(quiet: None, chair_dir: Path, mutation: list, raw: tuple | None) -> None:
    _fuzz_chair(chair_dir, mutation, raw)


def test_fuzz_inputs_are_valid_when_unmutated(chair_dir: Path, fuzz_dir: Path) -> None:
    """The fuzz targets load when nothing is mutated (so the fuzzers start from valid files)."""
    doc = json.loads(need(CHAIR).read_text())
    assert mutate_json(doc, _paths(doc), [(0, 1)]) == json.dumps(doc)
    path = chair_dir / "clean.gltf"
    path.write_text(json.dumps(doc))
    scene = load_scene(path, unwrap_mode="never")
    assert scene.part_names[0] == "SheenChair_fabric"
    assert np.isfinite(scene.positions.numpy()).all()
