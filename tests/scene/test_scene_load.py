"""io.load_scene: real assets, built glTFs (transforms, modes), OBJ, UV and tangent rules."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scene_builders import GltfDoc, Prim, cube_prim, quad

import nodes.catalog  # noqa: F401 - registers the nodes
from graphflow import UserError, registry
from graphflow.fingerprint import fingerprint
from graphflow.testing import make_context
from nodes.scene.loader import load_scene
from nodes.scene.uv import needs_unwrap, overlap_fraction, unwrap
from nodes.types import Scene

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"
BOX = ASSETS / "Box" / "Box.glb"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared asset {path} is absent (expected ../shared/assets next to the repository)")
    return path


@pytest.fixture(scope="module")
def chair() -> Scene:
    torch.set_num_threads(1)
    return registry.get("io.load_scene")().run(make_context(), path=need(CHAIR))


def part_faces(scene: Scene, name: str) -> np.ndarray:
    return scene.faces[scene.face_part == scene.part_names.index(name)].numpy()


def check_scene_invariants(scene: Scene) -> None:
    v = scene.positions.shape[0]
    assert scene.faces.dtype == torch.int64 and scene.faces.min() >= 0 and scene.faces.max() < v
    for t, width in ((scene.normals, 3), (scene.uvs, 2), (scene.tangents, 4)):
        assert t.shape == (v, width) and t.dtype == torch.float32 and torch.isfinite(t).all()
    assert torch.allclose(scene.normals.norm(dim=1), torch.ones(v), atol=1e-4)
    assert torch.allclose(scene.tangents[:, :3].norm(dim=1), torch.ones(v), atol=1e-4)
    assert set(scene.tangents[:, 3].unique().tolist()) <= {-1.0, 1.0}
    assert (scene.normals * scene.tangents[:, :3]).sum(dim=1).abs().max() < 1e-3  # orthogonal
    assert scene.face_part.shape == (scene.num_faces,)
    assert len(scene.part_names) == len(scene.part_info) == len(scene.part_textures)
    assert scene.source_uvs is not None and scene.source_uvs.shape == (v, 2)


def test_sheen_chair_loads_with_four_named_parts(chair: Scene) -> None:
    assert chair.part_names == ("SheenChair_fabric", "SheenChair_wood", "SheenChair_metal", "SheenChair_label")
    assert [i["node"] for i in chair.part_info] == list(chair.part_names)
    assert [i["material"] for i in chair.part_info][2:] == ["metal", "label"]
    assert 39_000 <= chair.num_faces <= 41_000
    check_scene_invariants(chair)
    # Metres, +Y up: a chair under a metre tall standing around y in [0.2, 0.7].
    extent = chair.positions.max(dim=0).values - chair.positions.min(dim=0).values
    assert 0.3 < float(extent[1]) < 1.0


def test_sheen_chair_texture_space(chair: Scene) -> None:
    # metal and label UVs are valid atlases: kept exactly; fabric and wood are tiled (outside [0, 1]): unwrapped.
    for name in ("SheenChair_metal", "SheenChair_label"):
        info = chair.part_info[chair.part_names.index(name)]
        assert "notes" not in info
        mask = torch.zeros(chair.positions.shape[0], dtype=torch.bool)
        mask[torch.from_numpy(part_faces(chair, name)).reshape(-1)] = True
        assert torch.equal(chair.uvs[mask], chair.source_uvs[mask])
    for name in ("SheenChair_fabric", "SheenChair_wood"):
        faces = part_faces(chair, name)
        assert overlap_fraction(chair.uvs.numpy(), faces) < 0.01
        assert chair.uvs.numpy()[faces].min() >= 0 and chair.uvs.numpy()[faces].max() <= 1
    # baseColor textures decoded (linear, times baseColorFactor); metal has none.
    textures = chair.part_textures
    assert textures[2] is None
    assert all(t is not None and t.shape[0] == 3 for t in (textures[0], textures[1], textures[3]))
    assert float(textures[0][1].mean()) < float(textures[0][0].mean())  # the fabric factor is red


@pytest.mark.slow
def test_loading_is_deterministic(chair: Scene) -> None:
    again = load_scene(need(CHAIR))  # xatlas on 36k triangles again: slow
    assert fingerprint(again) == fingerprint(chair)


def test_unwrapped_box_is_deterministic() -> None:
    assert fingerprint(load_scene(need(BOX))) == fingerprint(load_scene(need(BOX)))


def test_box_glb_loads() -> None:
    scene = load_scene(need(BOX))
    assert scene.num_faces == 12 and scene.part_names == ("Mesh",)
    assert scene.part_info[0]["material"] == "Red"
    check_scene_invariants(scene)
    assert not needs_unwrap(scene.uvs.numpy(), scene.faces.numpy())  # generated atlas
    # Box.glb's root matrix turns Z-up into Y-up; the unit cube stays a unit cube.
    assert torch.allclose(scene.positions.abs().max(dim=0).values, torch.full((3,), 0.5))


def test_node_transforms_are_applied(tmp_path: Path) -> None:
    angle = math.pi / 2
    doc = GltfDoc(
        meshes=[[quad()]],
        nodes=[
            {"name": "parent", "translation": [10.0, 0.0, 0.0], "children": [1]},
            {"name": "child", "mesh": 0, "rotation": [0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2)],
             "scale": [2.0, 2.0, 2.0]},
            {"name": "matrix", "mesh": 0, "matrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 5, 0, 1]},
        ],
        roots=[0, 2],
    )
    path = tmp_path / "t.glb"
    path.write_bytes(doc.glb())
    scene = load_scene(path)
    assert scene.part_names == ("child", "matrix")
    child = scene.positions[scene.faces[scene.face_part == 0].unique()]
    # Quad (x, y) in [0,1]^2 at z = 0, scaled 2, rotated 90° about Y (x -> -z), moved +10 in x.
    assert torch.allclose(child[:, 0], torch.full_like(child[:, 0], 10.0), atol=1e-5)
    assert torch.allclose(child[:, 2].min(), torch.tensor(-2.0), atol=1e-5)
    assert torch.allclose(child[:, 1].max(), torch.tensor(2.0), atol=1e-5)
    moved = scene.positions[scene.faces[scene.face_part == 1].unique()]
    assert torch.allclose(moved[:, 1].min(), torch.tensor(5.0))
    # Computed normals follow the rotation: the quad faced +Z, now faces +X.
    normal = scene.normals[scene.faces[scene.face_part == 0][0, 0]]
    assert torch.allclose(normal, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    check_scene_invariants(scene)


def test_mirroring_transform_keeps_front_faces(tmp_path: Path) -> None:
    doc = GltfDoc(meshes=[[quad()]], nodes=[{"name": "m", "mesh": 0, "scale": [-1.0, 1.0, 1.0]}])
    path = tmp_path / "m.glb"
    path.write_bytes(doc.glb())
    scene = load_scene(path)
    p = scene.positions.double()
    f = scene.faces
    face_normal = torch.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]], dim=1)
    assert (face_normal[:, 2] > 0).all()  # still facing +Z, counter-clockwise


def test_strips_fans_and_skipped_lines(tmp_path: Path) -> None:
    p = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], dtype=np.float32)
    strip = Prim(p, np.arange(5), mode=5)
    fan = Prim(p[[0, 1, 3, 2]], np.arange(4), mode=6)
    lines = Prim(p, np.arange(4), mode=1)
    doc = GltfDoc(meshes=[[strip, fan, lines]], nodes=[{"name": "n", "mesh": 0}])
    path = tmp_path / "s.glb"
    path.write_bytes(doc.glb())
    scene = load_scene(path)
    assert scene.part_names == ("n_0", "n_1")
    assert (scene.face_part == 0).sum() == 3 and (scene.face_part == 1).sum() == 2
    pos = scene.positions.double()
    f = scene.faces
    z = torch.cross(pos[f[:, 1]] - pos[f[:, 0]], pos[f[:, 2]] - pos[f[:, 0]], dim=1)[:, 2]
    assert (z > 0).all()  # strip winding alternation handled


def test_degenerate_triangles_dropped_and_counted(tmp_path: Path) -> None:
    prim = quad()
    prim.indices = np.array([0, 1, 2, 0, 2, 3, 0, 0, 1, 1, 2, 1])
    doc = GltfDoc(meshes=[[prim]], nodes=[{"name": "q", "mesh": 0}])
    path = tmp_path / "d.glb"
    path.write_bytes(doc.glb())
    scene = load_scene(path)
    assert scene.num_faces == 2
    assert "dropped 2 degenerate triangles" in scene.part_info[0]["notes"]


def test_only_degenerate_is_a_user_error(tmp_path: Path) -> None:
    prim = quad()
    prim.indices = np.array([0, 0, 1, 2, 2, 3])
    path = tmp_path / "z.glb"
    path.write_bytes(GltfDoc(meshes=[[prim]], nodes=[{"name": "q", "mesh": 0}]).glb())
    with pytest.raises(UserError, match="no usable triangles"):
        load_scene(path)


def test_points_only_is_a_user_error(tmp_path: Path) -> None:
    prim = Prim(np.eye(3, dtype=np.float32), np.arange(3), mode=0)
    path = tmp_path / "p.glb"
    path.write_bytes(GltfDoc(meshes=[[prim]], nodes=[{"name": "q", "mesh": 0}]).glb())
    with pytest.raises(UserError, match="no triangle meshes"):
        load_scene(path)


def test_max_faces_limit_names_the_param(tmp_path: Path) -> None:
    path = tmp_path / "c.glb"
    path.write_bytes(GltfDoc(meshes=[[cube_prim()]], nodes=[{"name": "c", "mesh": 0}]).glb())
    with pytest.raises(UserError) as err:
        load_scene(path, max_faces=11)
    assert err.value.param == "max_faces" and "raise max_faces" in str(err.value)
    assert load_scene(path, max_faces=12).num_faces == 12


def test_unwrap_modes(tmp_path: Path) -> None:
    valid = quad()
    overlapping = quad()
    overlapping.positions = np.concatenate([valid.positions, valid.positions + [0, 0, 1]])
    overlapping.uvs = np.concatenate([valid.uvs, valid.uvs])
    overlapping.indices = np.array([0, 1, 2, 0, 2, 3, 4, 5, 6, 4, 6, 7])
    doc = GltfDoc(meshes=[[valid], [overlapping], [cube_prim()]],
                  nodes=[{"name": "valid", "mesh": 0}, {"name": "overlap", "mesh": 1}, {"name": "nouv", "mesh": 2}])
    path = tmp_path / "u.glb"
    path.write_bytes(doc.glb())
    auto = load_scene(path)
    assert auto.part_names == ("valid", "overlap", "nouv")
    assert "notes" not in auto.part_info[0]  # kept exactly
    assert torch.equal(auto.uvs[:4], torch.from_numpy(valid.uvs))
    assert any("overlap" in n for n in auto.part_info[1]["notes"])
    assert any("no TEXCOORD_0" in n for n in auto.part_info[2]["notes"])
    assert overlap_fraction(auto.uvs.numpy(), part_faces(auto, "overlap")) < 0.01
    always = load_scene(path, unwrap_mode="always")
    assert "notes" in always.part_info[0]
    with pytest.raises(UserError) as err:
        load_scene(path, unwrap_mode="never")
    assert err.value.param == "unwrap" and "nouv" in str(err.value)


def test_uv_helpers() -> None:
    q = quad()
    faces = q.indices.reshape(-1, 3)
    assert not needs_unwrap(q.uvs, faces)
    assert needs_unwrap(None, faces)
    assert needs_unwrap(np.full_like(q.uvs, np.nan), faces)
    assert needs_unwrap(q.uvs * 3, faces)  # tiled
    cube = cube_prim()
    positions, new_faces, uvs, vmap = unwrap(cube.positions, cube.indices.reshape(-1, 3))
    assert np.allclose(positions, cube.positions[vmap])
    assert not needs_unwrap(uvs, new_faces)


def test_tangents_follow_uvs(tmp_path: Path) -> None:
    path = tmp_path / "q.glb"
    path.write_bytes(GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0}]).glb())
    scene = load_scene(path)
    # u grows with +x; glTF v grows downward = -y; bitangent cross(n, t) * w = +y must be -dv direction.
    assert torch.allclose(scene.tangents[:, :3], torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3), atol=1e-6)
    bitangent = torch.cross(scene.normals, scene.tangents[:, :3], dim=1) * scene.tangents[:, 3:]
    assert torch.allclose(bitangent, torch.tensor([[0.0, -1.0, 0.0]]).expand(4, 3), atol=1e-6)


def test_gltf_with_data_uri_and_scale(tmp_path: Path) -> None:
    path = tmp_path / "d.gltf"
    path.write_bytes(GltfDoc(meshes=[[quad()]], nodes=[{"name": "q", "mesh": 0}]).gltf_data_uri())
    scene = load_scene(path, scale=0.01)
    assert torch.allclose(scene.positions.max(), torch.tensor(0.01))
    assert scene.source == "d.gltf"


def test_obj_round_trip(tmp_path: Path) -> None:
    text = """# two groups, a quad polygon and a triangle, negative indices
o room
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
g wall
usemtl paint
f 1/1/1 2/2/1 3/3/1 4/4/1
g lamp
usemtl brass
v 0 0 1
v 1 0 1
v 0 1 1
f -3 -2 -1
"""
    path = tmp_path / "scene.obj"
    path.write_text(text)
    scene = load_scene(path)
    assert scene.part_names == ("wall", "lamp")
    assert [i["material"] for i in scene.part_info] == ["paint", "brass"]
    assert scene.num_faces == 3
    wall = scene.faces[scene.face_part == 0].unique()
    # OBJ v is bottom-up: vt (0, 0) at the bottom-left becomes glTF (0, 1).
    bottom_left = [i for i in wall.tolist() if scene.positions[i].tolist() == [0.0, 0.0, 0.0]][0]
    assert scene.uvs[bottom_left].tolist() == [0.0, 1.0]
    assert "notes" not in scene.part_info[0] and "notes" in scene.part_info[1]  # lamp had no UVs
    check_scene_invariants(scene)


@pytest.mark.parametrize("body, match", [
    ("v 0 0 0\nv 1 0 0\nf 1 2 3\n", "out of range"),
    ("v 0 0 x\n", "not a number"),
    ("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
    ("v 0 0 0\n", "no faces"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "at least 3"),
])
def test_obj_errors_name_the_line(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.obj"
    path.write_text(body)
    with pytest.raises(UserError, match=match) as err:
        load_scene(path)
    assert err.value.file == str(path)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_scene(tmp_path / "nope.glb")
    (tmp_path / "x.fbx").write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported scene format"):
        load_scene(tmp_path / "x.fbx")
    with pytest.raises(UserError, match="no scene file"):
        registry.get("io.load_scene")().run(make_context(), path=None)


def test_file_dependencies_name_buffers_and_images() -> None:
    node = registry.get("io.load_scene")()
    deps = node.file_dependencies("path", need(CHAIR))
    assert CHAIR.parent / "SheenChair.bin" in deps and CHAIR.parent / "chair_label.png" in deps
    assert node.file_dependencies("path", Path("/does/not/exist.gltf")) == []
