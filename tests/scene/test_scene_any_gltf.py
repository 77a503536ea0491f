"""Issue 23 items 2 and 3 at the node level (fast): unreadable source textures are recorded, not raised, until
a node needs them; the cost of a run is known from the scene before `texture.project` starts."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch
from unit_scenes import KTX2_BYTES, demo_room_glb, skeletons_glb, textured_quad

import nodes.catalog  # noqa: F401 - registers the nodes
from graphflow import UserError
from graphflow.testing import make_context
from nodes.brdf.scene_texture import texture_from_scene
from nodes.scene.loader import load_scene, unreadable_summary
from nodes.scene.nodes import LoadScene
from nodes.scene.segment import segment_scene
from nodes.texture.cost import instance_costs
from nodes.texture.nodes import TextureProject


def test_a_ktx2_base_colour_is_recorded_and_named_by_the_node_that_needs_it(tmp_path: Path) -> None:
    path = textured_quad(tmp_path, {"mimeType": "image/ktx2"}, KTX2_BYTES)
    ctx = make_context("scene")
    scene = LoadScene({"units": "m"}).run(ctx, path=path)  # loads: the texture is not needed to load
    record = scene.part_info[0]["unreadable_texture"]
    assert scene.part_textures[0] is None and record["extension"] == "ktx2" and record["image"] == "images[0]"
    assert any("cannot be read" in n and "ktx2" in n for n in ctx.notes)  # report.json's note
    instance = segment_scene(scene, by="node")["poster"]
    with pytest.raises(UserError) as err:
        texture_from_scene(scene, instance, 16)
    assert err.value.file.endswith("poster.glb images[0]") and "ktx2" in err.value.message


def test_a_missing_texture_file_is_recorded_with_its_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = textured_quad(tmp_path, {"uri": "textures/missing.png"}, None, glb=False)
    with caplog.at_level(logging.WARNING):
        scene = load_scene(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "missing.png (png: the image file does not exist)" in warnings[0]
    summary = unreadable_summary(scene)
    assert summary is not None and str(tmp_path / "textures" / "missing.png") in summary


def test_auto_units_read_a_centimetre_skeleton_as_centimetres(tmp_path: Path) -> None:
    """RecursiveSkeletons-like (copies of a 76-triangle mesh, 90 units tall): 90 m read as metres."""
    scene = load_scene(skeletons_glb(tmp_path / "skeletons.glb", copies=12), units="auto")
    assert scene.units == "cm" and scene.metres_per_unit == 0.01
    assert 0.8 < float(scene.positions[:, 1].max() - scene.positions[:, 1].min()) < 1.0


def test_the_budget_stops_a_scene_read_in_the_wrong_unit_in_seconds(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    scene = load_scene(skeletons_glb(tmp_path / "skeletons.glb"), units="m")
    instances = segment_scene(scene, by="node")
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        TextureProject().estimate({"scene": scene, "instances": instances}, {})
    assert time.perf_counter() - start < 5.0  # no projection ran: areas only
    message = f"{err.value.message} {err.value.hint}"
    assert err.value.param == "max_texels" and "88.1 M atlas texels over 84 instance(s)" in message
    assert "scene.params.units" in message and "texels_per_metre" in message and "max_size" in message


def test_the_estimate_matches_the_atlases_texture_project_makes(tmp_path: Path) -> None:
    scene = load_scene(demo_room_glb(tmp_path / "room.glb", "m"))
    instances = segment_scene(scene, by="node")
    node = TextureProject({"texels_per_metre": 16, "min_size": 8, "max_size": 64})
    line = node.estimate({"scene": scene, "instances": instances}, {})
    costs = instance_costs(scene, instances, node.params.settings())
    from nodes.scene.demo_room import build_room_references

    references = build_room_references(0, {}, 32)
    for cost in costs:
        made = node.run(make_context("project", item=cost.name), scene, instances[cost.name], references[cost.name])
        assert made.image.shape[-1] == cost.side, cost.name
    assert line.startswith(f"{len(costs)} instance(s), {sum(c.texels for c in costs) / 1e6:.2f} M atlas texels")
