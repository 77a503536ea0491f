"""Issue 14, loader side: the odd acceptance scene, degenerate UVs, real glTF features, load-time errors."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from odd_scene import (
    NODES,
    ODD_SCENE_NODES,
    PANEL_SPARSE,
    POSTER_TRANSFORM,
    build_big_mesh,
    build_odd_scene,
    write_references,
)
from PIL import Image
from scene_builders import GltfDoc, pack_glb, quad
from test_scene_load import BOX, CHAIR, check_scene_invariants, need, part_faces

import graphflow as gf
import nodes.catalog  # noqa: F401 - registers the nodes
from graphflow import Graph, UserError, registry
from graphflow.testing import make_context
from nodes.brdf.scene_texture import texture_from_scene
from nodes.scene.demo_room import build_room_scene
from nodes.scene.gltf import load_gltf
from nodes.scene.loader import load_scene
from nodes.scene.uv import apply_texture_transform, collapse_reason, unwrap_reason
from nodes.types import Scene

GRAPH = """
graph: load_only
inputs:
  scene: {type: path, default: null}
  references: {type: path, default: null}
nodes:
  load: {type: io.load_scene, inputs: {path: $inputs.scene}}
  segment: {type: segment.parts, params: {by: node}, inputs: {scene: load}}
  bind: {type: refs.bind, params: {image_size: 16}, inputs: {instances: segment, file: $inputs.references}}
outputs: {refs: bind, instances: segment}
"""


def load_and_segment(path: Path) -> tuple[Scene, dict]:
    scene = registry.get("io.load_scene")().run(make_context(), path=path)
    instances = registry.get("segment.parts")({"by": "node"}).run(make_context(), scene=scene)
    return scene, instances


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("odd")
    build_odd_scene(out)
    build_odd_scene(out, draco=True)
    write_references(out)
    return out


@pytest.mark.parametrize("name", ["odd_scene.glb", "odd_scene_draco.glb"])
def test_every_instance_has_valid_uvs_after_load(folder: Path, name: str) -> None:
    scene, instances = load_and_segment(folder / name)
    check_scene_invariants(scene)
    assert list(instances) == list(ODD_SCENE_NODES)
    uvs, positions = scene.uvs.numpy(), scene.positions.numpy()
    for instance_name, instance in instances.items():
        faces = scene.faces[instance.face_mask].numpy()
        assert unwrap_reason(uvs, faces, positions) is None, instance_name
    crate = scene.part_info[scene.part_names.index("crate")]
    assert any("collapsed" in note for note in crate["notes"])  # the all-zero TEXCOORD_0 was unwrapped
    for kept in ("floor", "lamp_bulb", "poster", "table_0", "table_1", "panel"):
        assert "notes" not in scene.part_info[scene.part_names.index(kept)], kept


def test_draco_variant_decodes_to_the_same_geometry(folder: Path) -> None:
    plain, draco = load_scene(folder / "odd_scene.glb"), load_scene(folder / "odd_scene_draco.glb")
    assert plain.part_names == draco.part_names
    assert torch.equal(plain.faces, draco.faces)
    assert float((plain.positions - draco.positions).abs().max()) < 1e-3  # 16-bit position quantization
    kept = plain.face_part.new_tensor([i for i, info in enumerate(plain.part_info) if "notes" not in info])
    mask = torch.zeros(plain.positions.shape[0], dtype=torch.bool)
    mask[plain.faces[torch.isin(plain.face_part, kept)].reshape(-1)] = True
    assert torch.equal(plain.uvs[mask], draco.uvs[mask])  # UVs are stored losslessly


def test_instanced_mesh_gives_one_instance_per_node(folder: Path) -> None:
    scene, instances = load_and_segment(folder / "odd_scene.glb")
    left, right = instances["stool_left"], instances["stool_right"]
    assert int(left.face_mask.sum()) == int(right.face_mask.sum()) == 12
    assert not bool((left.face_mask & right.face_mask).any())
    assert float(left.bbox[0, 0]) < 0 < float(right.bbox[0, 0])  # each at its own node's place
    infos = [scene.part_info[scene.part_names.index(n)] for n in ("stool_left", "stool_right")]
    assert infos[0]["mesh"] == infos[1]["mesh"] == "stool"
    table = instances["table"]  # one node, a mesh of two primitives: one instance
    assert int(table.face_mask.sum()) == 24


def test_texture_transform_is_applied_to_the_baseColor_lookup(folder: Path) -> None:
    scene, instances = load_and_segment(folder / "odd_scene.glb")
    poster = scene.part_names.index("poster")
    info = scene.part_info[poster]
    assert info["base_color_texture_transform"] == POSTER_TRANSFORM
    assert "base_color_uv_transform" not in info  # applied here; consumers must not apply it again
    verts = part_faces(scene, "poster").reshape(-1)
    expected = apply_texture_transform(scene.uvs[verts].numpy(), POSTER_TRANSFORM)
    assert np.allclose(scene.source_uvs[verts].numpy(), expected)
    corner = verts[(scene.uvs[verts] == torch.tensor([0.0, 0.0])).all(1).numpy()][0]
    assert torch.allclose(scene.source_uvs[corner], torch.tensor([0.0, 1.0]))  # uv (0,0) -> offset
    # The spec's example maps the whole quad into the lower-left (blue) quadrant of the texture.
    baked = texture_from_scene(scene, instances["poster"], 16)
    mean = baked.image[:, baked.mask].mean(1)
    assert float(mean[2]) > 0.95 and float(mean[0]) < 0.05 and float(mean[1]) < 0.05, mean


def test_texcoord_1_feeds_the_baseColor_lookup(folder: Path) -> None:
    scene = load_scene(folder / "odd_scene.glb")
    rug = scene.part_names.index("rug")
    assert scene.part_info[rug]["base_color_texcoord"] == 1
    verts = part_faces(scene, "rug").reshape(-1)
    assert torch.equal(scene.source_uvs[verts], scene.uvs[verts].flip(1))  # TEXCOORD_1 is TEXCOORD_0 flipped
    floor = part_faces(scene, "floor").reshape(-1)  # TEXCOORD_1 present but unused: TEXCOORD_0 kept
    assert torch.equal(scene.source_uvs[floor], scene.uvs[floor])


def test_sparse_accessor_values_are_substituted(folder: Path) -> None:
    scene = load_scene(folder / "odd_scene.glb")
    faces = part_faces(scene, "panel")
    assert len(faces) == 2  # without the sparse values both triangles would be degenerate and dropped
    node = next(n for n in NODES if n["name"] == "panel")
    p = scene.positions.double()[np.unique(faces)]
    assert torch.allclose(p[:, 1].max(), torch.tensor(node["translation"][1] + PANEL_SPARSE[2][1], dtype=p.dtype))


def _sparse_doc(sparse_indices: list[int], values: np.ndarray, base: bool = True) -> bytes:
    doc, blob = GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0}]).build()
    blob = bytearray(blob)
    start = len(blob)
    blob += np.array(sparse_indices, np.uint8).tobytes() + b"\0" * (-len(sparse_indices) % 4)
    values_start = len(blob)
    packed = values.astype(np.float32).tobytes()
    blob += packed
    doc["bufferViews"] += [{"buffer": 0, "byteOffset": start, "byteLength": len(sparse_indices)},
                           {"buffer": 0, "byteOffset": values_start, "byteLength": len(packed)}]
    doc["buffers"][0]["byteLength"] = len(blob)
    uv = doc["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]
    if not base:
        del doc["accessors"][uv]["bufferView"]
    n = len(doc["bufferViews"])
    doc["accessors"][uv]["sparse"] = {"count": len(sparse_indices),
                                      "indices": {"bufferView": n - 2, "componentType": 5121},
                                      "values": {"bufferView": n - 1}}
    return pack_glb(doc, bytes(blob))


def test_sparse_accessor_with_and_without_base_values(tmp_path: Path) -> None:
    moved = np.array([[0.25, 0.75], [0.5, 0.5]])
    path = tmp_path / "s.glb"
    path.write_bytes(_sparse_doc([1, 3], moved))
    scene = load_scene(path, unwrap_mode="never")
    expected = quad().uvs.copy()
    expected[[1, 3]] = moved
    assert torch.equal(scene.source_uvs, torch.from_numpy(expected.astype(np.float32)))
    path.write_bytes(_sparse_doc([0, 1, 2], np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), base=False))
    zeros_base = load_scene(path, unwrap_mode="never")
    assert zeros_base.source_uvs.tolist() == [[0, 0], [1, 0], [1, 1], [0, 0]]  # vertex 3 keeps the zero base
    for indices in ([3, 1], [1, 9]):  # not increasing; out of range
        path.write_bytes(_sparse_doc(indices, moved))
        with pytest.raises(UserError, match="sparse.indices must increase strictly") as err:
            load_scene(path)
        assert err.value.file == str(path)


def test_mesh_over_65k_vertices_loads_with_uint32_indices(tmp_path: Path) -> None:
    path = build_big_mesh(tmp_path, side=260)
    doc = json.loads(path.read_bytes()[20:20 + int.from_bytes(path.read_bytes()[12:16], "little")])
    assert doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5125
    scene = load_scene(path)
    assert scene.positions.shape[0] == 260 * 260 > 65_535
    assert scene.num_faces == 2 * 259 * 259
    assert "notes" not in scene.part_info[0]  # grid UVs are a valid atlas: kept


def _with_extensions(tmp_path: Path, used: list[str], required: list[str]) -> Path:
    doc, blob = GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0}]).build()
    doc["extensionsUsed"], doc["extensionsRequired"] = used, required
    path = tmp_path / "ext.glb"
    path.write_bytes(pack_glb(doc, blob))
    return path


def test_required_unknown_extension_is_a_user_error_naming_it(tmp_path: Path) -> None:
    path = _with_extensions(tmp_path, ["EXT_made_up", "KHR_materials_sheen"], ["EXT_made_up", "KHR_materials_sheen"])
    with pytest.raises(UserError, match="EXT_made_up") as err:
        load_scene(path)
    assert err.value.file == str(path) and "KHR_materials_sheen" not in str(err.value)
    path = _with_extensions(tmp_path, ["EXT_meshopt_compression"], ["EXT_meshopt_compression"])
    with pytest.raises(UserError, match="EXT_meshopt_compression") as err:
        load_scene(path)
    assert "gltfpack" in str(err.value)


def test_optional_unknown_extension_is_ignored_with_one_note(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = _with_extensions(tmp_path, ["EXT_made_up", "KHR_materials_sheen", "KHR_texture_transform"], [])
    with caplog.at_level(logging.INFO, logger="graphflow.nodes.scene"):
        scene = load_scene(path)
    notes = [r.getMessage() for r in caplog.records if "EXT_made_up" in r.getMessage()]
    assert len(notes) == 1 and "ignoring optional glTF extension(s) EXT_made_up" in notes[0]
    assert "KHR_materials_sheen" not in notes[0] and scene.num_faces == 2
    required_sheen = _with_extensions(tmp_path, ["KHR_materials_sheen"], ["KHR_materials_sheen"])
    assert load_scene(required_sheen).num_faces == 2  # appearance-only: graphflow writes its own materials


def test_corrupt_draco_data_is_a_user_error_naming_the_extension(folder: Path, tmp_path: Path) -> None:
    data = bytearray((folder / "odd_scene_draco.glb").read_bytes())
    doc_length = int.from_bytes(data[12:16], "little")
    doc = json.loads(data[20:20 + doc_length])
    view = doc["bufferViews"][doc["meshes"][0]["primitives"][0]["extensions"]["KHR_draco_mesh_compression"]
                              ["bufferView"]]
    start = 20 + doc_length + 8 + view.get("byteOffset", 0)
    data[start:start + view["byteLength"]] = b"\x07" * view["byteLength"]
    path = tmp_path / "bad_draco.glb"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="KHR_draco_mesh_compression") as err:
        load_scene(path)
    assert err.value.file == str(path) and "meshes[0].primitives[0]" in str(err.value)


def _add_accessor(doc: dict, blob: bytearray, array: np.ndarray, ctype: int, atype: str,
                  normalized: bool = False) -> int:
    blob.extend(b"\0" * (-len(blob) % 4))
    doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": array.nbytes})
    blob.extend(np.ascontiguousarray(array).tobytes())
    accessor = {"bufferView": len(doc["bufferViews"]) - 1, "componentType": ctype, "count": len(array),
                "type": atype}
    if normalized:
        accessor["normalized"] = True
    doc["accessors"].append(accessor)
    doc["buffers"][0]["byteLength"] = len(blob)
    return len(doc["accessors"]) - 1


def test_gpu_instancing_gives_one_instance_per_copy(tmp_path: Path) -> None:
    doc, raw = GltfDoc(meshes=[[quad()]], nodes=[{"name": "chair", "mesh": 0, "translation": [0.0, 0.0, 5.0]}]).build()
    blob = bytearray(raw)
    offsets = np.array([[0, 0, 0], [2, 0, 0], [4, 0, 0]], np.float32)
    doc["nodes"][0]["extensions"] = {"EXT_mesh_gpu_instancing": {
        "attributes": {"TRANSLATION": _add_accessor(doc, blob, offsets, 5126, "VEC3")}}}
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["EXT_mesh_gpu_instancing"]
    path = tmp_path / "gpu.glb"
    path.write_bytes(pack_glb(doc, bytes(blob)))
    _, instances = load_and_segment(path)
    assert list(instances) == ["chair_0", "chair_1", "chair_2"]
    for k, name in enumerate(instances):
        assert torch.allclose(instances[name].bbox[0], torch.tensor([2.0 * k, 0.0, 5.0]))


def test_quantized_attributes_and_webp_textures_load(tmp_path: Path) -> None:
    doc, raw = GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0, "scale": [0.001, 0.001, 0.001]}]).build()
    blob = bytearray(raw)
    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    attributes["POSITION"] = _add_accessor(doc, blob, (quad().positions * 1000).astype(np.uint16), 5123, "VEC3")
    doc["accessors"][attributes["POSITION"]].update(min=[0, 0, 0], max=[1000, 1000, 0])
    attributes["TEXCOORD_0"] = _add_accessor(doc, blob, (quad().uvs * 65535).astype(np.uint16), 5123, "VEC2", True)
    webp = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(webp, format="WEBP", lossless=True)
    blob.extend(b"\0" * (-len(blob) % 4))
    doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(webp.getvalue())})
    blob.extend(webp.getvalue())
    doc["buffers"][0]["byteLength"] = len(blob)
    doc["images"] = [{"bufferView": len(doc["bufferViews"]) - 1, "mimeType": "image/webp"}]
    doc["textures"] = [{"extensions": {"EXT_texture_webp": {"source": 0}}}]
    doc["materials"] = [{"name": "m", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    doc["meshes"][0]["primitives"][0]["material"] = 0
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["KHR_mesh_quantization", "EXT_texture_webp"]
    path = tmp_path / "quantized.glb"
    path.write_bytes(pack_glb(doc, bytes(blob)))
    scene = load_scene(path)
    assert torch.allclose(scene.positions, torch.from_numpy(quad().positions), atol=1e-6)
    assert torch.allclose(scene.uvs, torch.from_numpy(quad().uvs)) and "notes" not in scene.part_info[0]
    texture = scene.part_textures[0]
    assert texture is not None and float(texture[2].min()) > 0.99 and float(texture[:2].max()) < 0.01


# ------------------------------------------------------------------ degenerate UVs (unwrap: auto)

def _grid(n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n x n quad grid on the unit square (positions, faces, valid UVs)."""
    t = np.linspace(0, 1, n + 1)
    x, y = np.meshgrid(t, t)
    positions = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    c = (np.arange(n)[None, :] + (n + 1) * np.arange(n)[:, None]).ravel()
    faces = np.concatenate([np.stack([c, c + 1, c + n + 2], 1), np.stack([c, c + n + 2, c + n + 1], 1)])
    return positions, faces, positions[:, :2].copy()


def test_degenerate_uvs_are_told_from_valid_ones() -> None:
    positions, faces, uvs = _grid()
    assert unwrap_reason(uvs, faces, positions) is None
    assert unwrap_reason(uvs * 0.5 + 0.25, faces, positions) is None  # smaller, still an atlas
    assert "zero UV area" in unwrap_reason(np.zeros_like(uvs), faces, positions)
    assert "zero UV area" in unwrap_reason(np.full_like(uvs, 0.3), faces, positions)  # a point
    line = np.stack([uvs[:, 0], uvs[:, 0]], 1)  # u == v: a line
    assert "zero UV area" in unwrap_reason(line, faces, positions)
    assert unwrap_reason(np.where(uvs > 0.5, np.nan, uvs), faces, positions) == "non-finite UVs"
    half = uvs.copy()
    half[positions[:, 0] > 0.5, 0] = 0.5  # the right half of the surface collapses onto the line u = 0.5
    assert "of the surface maps to collapsed" in collapse_reason(half, faces, positions)
    assert "texel" in unwrap_reason(uvs * 0.01, faces, positions)  # covers a handful of texels


def test_collapsed_uvs_are_unwrapped_under_auto_only(tmp_path: Path) -> None:
    prim = quad()
    prim.uvs = np.zeros_like(prim.uvs)
    path = tmp_path / "zero.glb"
    path.write_bytes(GltfDoc(meshes=[[prim]], nodes=[{"name": "z", "mesh": 0}]).glb())
    auto = load_scene(path)
    assert unwrap_reason(auto.uvs.numpy(), auto.faces.numpy(), auto.positions.numpy()) is None
    assert torch.equal(auto.source_uvs, torch.zeros_like(auto.source_uvs))  # the file's UVs kept for lookups
    never = load_scene(path, unwrap_mode="never")  # the user asked to keep them as they are
    assert torch.equal(never.uvs, torch.zeros_like(never.uvs))


def test_valid_uvs_stay_bit_identical_on_real_assets(tmp_path: Path) -> None:
    chair_parts = {p.name: p for p in load_gltf(need(CHAIR))}
    for name in ("SheenChair_label", "SheenChair_metal"):
        part = chair_parts[name]
        assert unwrap_reason(part.uvs, part.faces, part.positions) is None, name
    # Box.glb has no UVs: give it the atlas it gets at load as TEXCOORD_0, and check a reload keeps it exactly.
    box = load_scene(need(BOX))
    prim = quad()
    prim.positions, prim.uvs, prim.indices = box.positions.numpy(), box.uvs.numpy(), box.faces.numpy().reshape(-1)
    path = tmp_path / "box_uv.glb"
    path.write_bytes(GltfDoc(meshes=[[prim]], nodes=[{"name": "Mesh", "mesh": 0}]).glb())
    again = load_scene(path)
    assert "notes" not in again.part_info[0] and torch.equal(again.uvs, box.uvs)
    room = build_room_scene()
    for i, name in enumerate(room.part_names):
        faces = room.faces[room.face_part == i].numpy()
        assert unwrap_reason(room.uvs.numpy(), faces, room.positions.numpy()) is None, name


# ------------------------------------------------------------------ through the CLI

def _cli(tmp_path: Path, scene: Path, references: Path) -> subprocess.CompletedProcess:
    graph_file = tmp_path / "load_only.yaml"
    graph_file.write_text(GRAPH)
    return subprocess.run(
        [sys.executable, "-m", "graphflow.cli", "run", str(graph_file), "--input", f"scene={scene}",
         "--input", f"references={references}", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
         "--quiet"], check=False, capture_output=True, text=True, timeout=300)


def test_cli_loads_the_odd_scenes_and_stops_bad_files_with_exit_2(folder: Path, tmp_path: Path) -> None:
    plain = gf.run(Graph.from_yaml(GRAPH), {"scene": folder / "odd_scene.glb", "references": folder / "refs.yaml"},
                   cache=tmp_path / "api_cache")
    assert list(plain.outputs["refs"]) == list(ODD_SCENE_NODES)
    proc = _cli(tmp_path, folder / "odd_scene_draco.glb", folder / "refs.yaml")
    assert proc.returncode == 0, proc.stderr
    bad = _with_extensions(tmp_path, ["EXT_made_up"], ["EXT_made_up"])
    proc = _cli(tmp_path, bad, folder / "refs.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "EXT_made_up" in proc.stderr and str(bad) in proc.stderr and "node 'load'" in proc.stderr
    assert "Traceback" not in proc.stderr
