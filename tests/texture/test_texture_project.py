"""texture.project: the swatch at its real size, oriented, not mirrored, seamless; references' size and mode."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nodes.catalog  # noqa: F401
from graphflow import Keyed, UserError
from graphflow.testing import make_context
from nodes.measures.seams import seam_ratio
from nodes.scene.demo_room import DemoInstance, Quad, box, build_room_references, instance_mesh
from nodes.scene.loader import assemble_scene
from nodes.scene.nodes import SegmentParts
from nodes.scene.references import bind_references
from nodes.texture.charts import build_charts
from nodes.texture.nodes import TextureProject
from nodes.texture.project import ProjectionSettings, atlas_side, project_instance
from nodes.quality.shapes import checker, shapes_references, shapes_scene, stripes
from nodes.types import DEFAULT_SWATCH_SIZE, Instance, Reference

X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def quad_scene(width: float = 2.0, height: float = 1.0, wall: bool = True):
    """One quad: a wall facing +Z (texture up = world up) or a floor facing +Y."""
    quad = (Quad((-1.0, 2.0, 0.0), X, (0.0, -1.0, 0.0), width, height, Z) if wall
            else Quad((-1.0, 0.0, -0.5), X, Z, width, height, Y))
    scene = assemble_scene([instance_mesh(DemoInstance("q", "generic", "q", "", "", (quad,)))], unwrap_mode="never")
    return scene, torch.ones(scene.num_faces, dtype=torch.bool)


def marker_swatch(size: int = 64) -> torch.Tensor:
    """Grey with a red top-left quarter and a blue top-right quarter: shows orientation and mirroring."""
    image = torch.full((3, size, size), 0.5)
    image[:, : size // 2, : size // 2] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    image[:, : size // 2, size // 2:] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    return image


def world_colour(scene, texture, point: tuple[float, float, float]) -> torch.Tensor:
    """The atlas colour at the surface point nearest `point` (quad scenes: UV is affine in position)."""
    positions, uvs = scene.positions.double(), scene.uvs.double()
    # Solve uv = A [x, y, z, 1] by least squares over the vertices (exact on a planar quad).
    design = torch.cat([positions, torch.ones(len(positions), 1, dtype=torch.float64)], 1)
    coeffs = torch.linalg.pinv(design) @ uvs
    uv = torch.tensor([*point, 1.0], dtype=torch.float64) @ coeffs
    side = texture.image.shape[-1]
    col, row = int(uv[0] * side), int(uv[1] * side)
    return texture.image[:, row, col]


def test_stripes_repeat_at_their_real_size_along_a_wall() -> None:
    scene, faces = quad_scene(2.0, 1.0)
    reference = Reference(images=(stripes(256, periods=4),), size=0.4)  # 4 stripe pairs per 0.4 m
    texture = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=128))
    row = torch.stack([world_colour(scene, texture, (-1.0 + 2.0 * (i + 0.5) / 400, 1.5, 0.0)) for i in range(400)])
    dark = (row.mean(1) < 0.5).float()
    transitions = int((dark[1:] != dark[:-1]).sum())
    assert transitions in (39, 40, 41), transitions  # 2 m / 0.1 m per pair = 20 pairs = 40 edges
    column = torch.stack([world_colour(scene, texture, (-0.93, 1.99 - 0.98 * i / 100, 0.0)) for i in range(100)])
    assert float(column.std(0).max()) < 0.02  # stripes are vertical on a wall: constant down a column


def test_checker_squares_are_square_on_a_floor_and_atlas_follows_density() -> None:
    scene, faces = quad_scene(2.0, 1.0, wall=False)
    reference = Reference(images=(checker(256, squares=4),), size=0.5)
    texture = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=64))
    side = texture.image.shape[-1]
    charts = build_charts(scene.positions.numpy(), scene.normals.numpy(), scene.uvs.numpy(), scene.faces.numpy())
    assert side == atlas_side(charts, ProjectionSettings(texels_per_metre=64)) and side & (side - 1) == 0

    def period(axis: int) -> float:
        samples = []
        for i in range(300):
            t = 0.05 + 0.9 * i / 300
            point = [-0.95, 0.0, -0.45]
            point[axis] += t * (1.8 if axis == 0 else 0.9)
            samples.append(world_colour(scene, texture, tuple(point)).mean())
        dark = (torch.stack(samples) < 0.4).float()
        edges = int((dark[1:] != dark[:-1]).sum())
        return (0.9 * (1.8 if axis == 0 else 0.9)) / max(edges, 1)

    assert abs(period(0) - 0.125) < 0.02 and abs(period(2) - 0.125) < 0.02  # 4 squares per 0.5 m, both ways


def test_swatch_reads_upright_and_unmirrored_on_a_wall() -> None:
    """Swatch coordinates are anchored to the world (s = (x, -y) on a wall facing +Z, seen from outside):
    a wall exactly one swatch wide whose top-left corner sits on a repeat boundary shows the image as it is."""
    scene, faces = quad_scene(0.5, 0.5)  # spans x in [-1, -0.5], y in [1.5, 2]
    reference = Reference(images=(marker_swatch(),), size=0.5)
    texture = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=128, blend_width=0))
    red, blue, grey = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0]), torch.tensor([0.5, 0.5, 0.5])
    assert torch.allclose(world_colour(scene, texture, (-0.9, 1.9, 0.0)), red, atol=0.05)  # top-left
    assert torch.allclose(world_colour(scene, texture, (-0.6, 1.9, 0.0)), blue, atol=0.05)  # top-right
    assert torch.allclose(world_colour(scene, texture, (-0.75, 1.6, 0.0)), grey, atol=0.05)  # bottom


def test_box_pattern_runs_on_across_edges_and_seams_are_hidden() -> None:
    scene = assemble_scene([instance_mesh(DemoInstance("b", "wood", "b", "", "", tuple(box((0, 0.5, 0),
                                                                                            (0.8, 1.0, 0.5)))))],
                           unwrap_mode="never")
    faces = torch.ones(scene.num_faces, dtype=torch.bool)
    reference = shapes_references()["cabinet"]
    blended = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=128))
    raw = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=128, blend_width=0))
    ratio = seam_ratio(scene.positions, scene.faces, scene.uvs, blended.image).ratio
    raw_ratio = seam_ratio(scene.positions, scene.faces, scene.uvs, raw.image).ratio
    assert blended.info["charts"] == 6 and blended.info["seam_edges"] == 12
    assert ratio <= 1.2 and ratio <= raw_ratio, (ratio, raw_ratio)


def test_sphere_poles_fall_back_to_triplanar_and_cylinder_keeps_its_chart() -> None:
    scene = shapes_scene()
    instances = SegmentParts({}).run(make_context("segment"), scene)
    refs = shapes_references()
    settings = ProjectionSettings(texels_per_metre=64)
    ball = project_instance(scene, instances["ball"].face_mask, refs["ball"], settings)
    stool = project_instance(scene, instances["stool"].face_mask, refs["stool"], settings)
    assert ball.info["triplanar_charts"] == 1
    assert stool.info["triplanar_charts"] == 0 and stool.info["charts"] == 2
    for texture in (ball, stool):
        assert texture.mask.any() and torch.isfinite(texture.image).all()
        assert float(texture.image.min()) >= 0 and float(texture.image.max()) <= 1


def test_fit_places_the_picture_once_over_the_rug_top() -> None:
    from nodes.scene.demo_room import build_room_scene

    scene = build_room_scene()
    rug = scene.part_names.index("rug")
    faces = scene.face_part == rug
    reference = build_room_references()["rug"]
    assert reference.mode == "fit"
    texture = project_instance(scene, faces, reference, ProjectionSettings(texels_per_metre=128))
    picture = reference.images[0]
    # The top chart holds the whole picture once: its mean colour over the top is the picture's.
    mask = texture.mask
    top_mean = texture.image[:, mask].mean(1)
    assert torch.allclose(top_mean, picture.mean((1, 2)), atol=0.05)


def test_project_node_is_deterministic_and_maps_per_instance() -> None:
    scene = shapes_scene()
    instances = SegmentParts({}).run(make_context("segment"), scene)
    refs = shapes_references()
    node = TextureProject({"texels_per_metre": 32})
    a = node.run(make_context("project", item="plate"), scene, instances["plate"], refs["plate"])
    b = node.run(make_context("project", item="plate"), scene, instances["plate"], refs["plate"])
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert a.info["texels_per_metre"] == 32 and a.info["mode"] == "tile"
    with pytest.raises(Exception, match="min_size"):
        TextureProject({"min_size": 512, "max_size": 64})


# ---- references: size and mode -------------------------------------------------------------------

def _png(path: Path, size: tuple[int, int] = (40, 20)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)
    return path


def _instances(*names: str) -> Keyed[Instance]:
    mask = torch.zeros(4, dtype=torch.bool)
    return Keyed({n: Instance(name=n, face_mask=mask, bbox=torch.zeros(2, 3), material="wood") for n in names})


def test_references_file_size_mode_and_class_defaults(tmp_path: Path) -> None:
    _png(tmp_path / "oak.png")
    (tmp_path / "refs.yaml").write_text(
        "instances:\n  table: {images: oak.png, size: 1.5}\n  rug: {images: oak.png, mode: fit, material: fabric}\n"
        "  shelf: oak.png\n")
    refs = bind_references(_instances("table", "rug", "shelf"), file=tmp_path / "refs.yaml")
    assert refs["table"].size == 1.5 and refs["table"].mode == "tile"
    assert refs["rug"].mode == "fit" and refs["rug"].size == DEFAULT_SWATCH_SIZE["fabric"]
    assert refs["shelf"].size == DEFAULT_SWATCH_SIZE["wood"] == 1.0


@pytest.mark.parametrize("entry, words", [
    ("{images: oak.png, size: 0}", ["'table'", "size"]),
    ("{images: oak.png, size: -2}", ["'table'", "size"]),
    ("{images: oak.png, size: abc}", ["'table'", "size"]),
    ("{images: oak.png, size: .nan}", ["'table'", "size"]),
    ("{images: oak.png, size: true}", ["'table'", "size"]),
    ("{images: oak.png, mode: stretch}", ["'table'", "mode", "tile", "fit"]),
])
def test_bad_size_or_mode_names_the_entry_and_the_key(tmp_path: Path, entry: str, words: list[str]) -> None:
    _png(tmp_path / "oak.png")
    (tmp_path / "refs.yaml").write_text(f"instances:\n  table: {entry}\n")
    with pytest.raises(UserError) as info:
        bind_references(_instances("table"), file=tmp_path / "refs.yaml")
    message = str(info.value)
    assert all(w in message for w in words), message
    assert info.value.file == str(tmp_path / "refs.yaml")


def test_demo_room_references_declare_their_size_and_the_rug_fits() -> None:
    refs = build_room_references()
    assert refs["rug"].mode == "fit"
    assert all(r.mode == "tile" for n, r in refs.items() if n != "rug")
    assert refs["floor"].size == 1.2 and refs["sofa"].size == 0.3
