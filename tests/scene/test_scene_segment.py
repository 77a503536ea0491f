"""segment.parts: groupings, merge/rename rules, material hints, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scene_builders import GltfDoc, cube_prim, quad

import nodes.catalog  # noqa: F401
from graphflow import UserError, registry
from graphflow.testing import make_context
from nodes.scene.demo_room import build_room_scene
from nodes.scene.loader import load_scene
from nodes.scene.segment import guess_material
from nodes.types import Scene

CHAIR = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "SheenChair" / "SheenChair.gltf"


@pytest.fixture(scope="module")
def two_cubes(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    c1, c2 = cube_prim("Oak Wood"), cube_prim("chrome")
    c2.positions = c2.positions + np.float32(3.0)
    doc = GltfDoc(meshes=[[c1, c2], [quad()]],
                  nodes=[{"name": "table", "mesh": 0}, {"name": "poster", "mesh": 1, "translation": [0, 0, 5]}])
    path = tmp_path_factory.mktemp("seg") / "cubes.glb"
    path.write_bytes(doc.glb())
    return load_scene(path)


def run(scene: Scene, **params: object):
    return registry.get("segment.parts")(params).run(make_context(), scene=scene)


def test_sheen_chair_by_node_gives_the_four_names() -> None:
    if not CHAIR.exists():
        pytest.skip(f"shared asset {CHAIR} is absent")
    scene = load_scene(CHAIR, unwrap_mode="never")  # segmentation does not depend on UVs; skip xatlas
    instances = run(scene, by="node")
    assert list(instances) == ["SheenChair_fabric", "SheenChair_wood", "SheenChair_metal", "SheenChair_label"]
    assert [i.material for i in instances.values()] == ["fabric", "wood", "metal", "paper"]
    masks = torch.stack([i.face_mask for i in instances.values()])
    assert masks.sum(dim=0).eq(1).all()  # a partition of the faces


def test_groupings(two_cubes: Scene) -> None:
    assert list(run(two_cubes, by="node")) == ["table", "poster"]
    assert list(run(two_cubes, by="mesh")) == ["mesh0", "mesh1"]
    assert list(run(two_cubes, by="primitive")) == ["table_0", "table_1", "poster"]
    by_material = run(two_cubes, by="material")
    assert list(by_material) == ["Oak Wood", "chrome", "default"]
    assert [i.material for i in by_material.values()] == ["wood", "metal", "paper"]  # "poster" node
    components = run(two_cubes, by="component")
    assert list(components) == ["table_0_0", "table_1_0", "poster_0"]
    table = run(two_cubes, by="node")["table"]
    assert int(table.face_mask.sum()) == 24
    assert torch.allclose(table.bbox, torch.tensor([[-0.5] * 3, [3.5] * 3]))


def test_components_split_disconnected_pieces(tmp_path: Path) -> None:
    c1, c2 = cube_prim(), cube_prim()
    c2.positions = c2.positions + np.float32(2.0)
    merged = cube_prim()
    merged.positions = np.concatenate([c1.positions, c2.positions])
    merged.indices = np.concatenate([c1.indices, c2.indices + 8])
    path = tmp_path / "two.glb"
    path.write_bytes(GltfDoc(meshes=[[merged]], nodes=[{"name": "pair", "mesh": 0}]).glb())
    scene = load_scene(path)
    components = run(scene, by="component")
    assert list(components) == ["pair_0", "pair_1"]
    assert [int(i.face_mask.sum()) for i in components.values()] == [12, 12]


def test_merge_and_rename(two_cubes: Scene) -> None:
    out = run(two_cubes, by="primitive", merge={"furniture": ["table_*"]}, rename={"poster": "art"})
    assert list(out) == ["furniture", "art"]
    assert int(out["furniture"].face_mask.sum()) == 24
    out = run(two_cubes, by="primitive", rename={"table_*": "desk_*"})
    assert list(out) == ["desk_0", "desk_1", "poster"]
    out = run(two_cubes, by="primitive", rename={"table_*": "desk", "table_1": "lamp"})  # exact wins over glob
    assert list(out) == ["desk", "lamp", "poster"]


@pytest.mark.parametrize("params, param, culprit", [
    ({"rename": {"sofa": "couch"}}, "rename", "sofa"),
    ({"rename": {"chair_*": "x"}}, "rename", "chair_*"),
    ({"merge": {"all": ["table", "nothing*"]}}, "merge", "nothing*"),
    ({"merge": {"a": ["table"], "b": ["table"]}}, "merge", "'b'"),
    ({"min_faces": 1000}, "min_faces", "min_faces"),
])
def test_rule_errors_name_the_entry(two_cubes: Scene, params: dict, param: str, culprit: str) -> None:
    with pytest.raises(UserError) as err:
        run(two_cubes, by="node", **params)
    assert err.value.param == param and culprit in str(err.value)


def test_min_faces_drops_small_groups(two_cubes: Scene) -> None:
    assert list(run(two_cubes, by="node", min_faces=3)) == ["table"]


def test_bad_params_are_rejected() -> None:
    with pytest.raises(Exception, match="by"):
        registry.get("segment.parts")({"by": "colour"})
    with pytest.raises(Exception, match="extra"):
        registry.get("segment.parts")({"grouping": "node"})


def test_guess_material() -> None:
    assert guess_material("fabric Mystere Mango Velvet") == "fabric"
    assert guess_material("", "Walnut_Table") == "wood"
    assert guess_material("Material.001", "thing") == "generic"
    assert guess_material("brushed steel") == "metal"


def test_demo_room_segments_by_node() -> None:
    scene = build_room_scene()
    assert list(run(scene, by="node")) == list(scene.part_names)
