"""Issue 14 item 5: what one item of a stage does follows its instance, not the scene around it.

The same box is put alone in a scene and behind a crowd of 30 other boxes (so its vertex ids are offset
and the scene has ~30x its vertices). Each per-item routine must give the box's result of the scene with
the box alone, and no ray caster, weld or raster inside it may receive the crowd's vertices: the casters
and welds built are counted, not timed (a stage of N items then costs N x one item, not N x the scene).
"""
from __future__ import annotations

import pytest
import torch

import nodes.catalog  # noqa: F401
import nodes.measures.seams as seams_module
import nodes.render.embree as embree
import nodes.render.uv_raster as uv_raster
import nodes.texture.charts as charts_module
from graphflow.testing import make_context
from nodes.distill.nodes import DistillPixel, DistillSemantic
from nodes.distill.world_scale import ideal_atlas, selection_closeups
from nodes.measures.seams import seam_ratio
from nodes.render.nodes import SampleViews
from nodes.render.views import sample_views
from nodes.render.uv_raster import texel_fragments
from nodes.scene.demo_room import DemoInstance, Quad, box, instance_mesh
from nodes.scene.loader import assemble_scene
from nodes.scene.segment import segment_scene
from nodes.texture.charts import build_charts
from nodes.texture.nodes import TextureProject
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.quality.shapes import stripes
from nodes.types import Reference, TextureMap


def _box(name: str, centre: tuple[float, float, float], cells: int) -> DemoInstance:
    quads = tuple(Quad(q.origin, q.u_axis, q.v_axis, q.width, q.height, q.normal, (cells, cells))
                  for q in box(centre, (0.6, 0.6, 0.6)))
    return DemoInstance(name, "wood", name, "", "", quads, swatch_size=0.3)


@pytest.fixture(scope="module")
def scenes():
    item = _box("item", (0.0, 0.3, 0.0), 3)
    crowd = [_box(f"crowd_{k:02d}", (3.0 + 1.2 * (k % 6), 0.3, 3.0 + 1.2 * (k // 6)), 4) for k in range(30)]
    crowded = assemble_scene([instance_mesh(i) for i in (*crowd, item)], unwrap_mode="never")
    alone = assemble_scene([instance_mesh(item)], unwrap_mode="never")
    return crowded, segment_scene(crowded), alone, segment_scene(alone)


@pytest.fixture()
def reference() -> Reference:
    return Reference(images=(stripes(128, periods=4),), size=0.3)


class _Counted:
    """Records the vertex count of every `RayCaster` built while patched in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object) -> None:
        self.vertices: list[int] = []
        original = embree.RayCaster
        counts = self.vertices

        class Recording(original):  # type: ignore[misc, valid-type]
            def __init__(self, positions, faces) -> None:  # noqa: ANN001
                counts.append(int(len(positions)))
                super().__init__(positions, faces)

        monkeypatch.setattr(module, "RayCaster", Recording)


def _item_vertices(scene, instances) -> int:
    return int(torch.unique(scene.faces[instances["item"].face_mask]).numel())


def test_texel_fragments_follow_the_instance(scenes, monkeypatch) -> None:
    crowded, instances, alone, alone_instances = scenes
    casters = _Counted(monkeypatch, uv_raster)
    got = texel_fragments(crowded, instances["item"].face_mask, 64)
    want = texel_fragments(alone, alone_instances["item"].face_mask, 64)
    assert casters.vertices and max(casters.vertices) <= _item_vertices(crowded, instances) < len(crowded.positions) // 20
    offset = int(torch.nonzero(instances["item"].face_mask)[0])  # the box's faces come after the crowd's
    assert torch.equal(torch.where(got.face_id >= 0, got.face_id - offset, -1), want.face_id)
    assert torch.equal(got.bary, want.bary)
    assert torch.equal(got.position, want.position)


def test_charts_seams_and_the_seam_measure_follow_the_instance(scenes, monkeypatch) -> None:
    crowded, instances, alone, alone_instances = scenes
    welded: list[int] = []
    edge_pairs, seam_edges = seams_module._edge_pairs, charts_module._seam_edges
    monkeypatch.setattr(seams_module, "_edge_pairs", lambda p, f, *a: (welded.append(len(p)), edge_pairs(p, f, *a))[1])
    monkeypatch.setattr(charts_module, "_seam_edges",
                        lambda p, u, f: (welded.append(len(p)), seam_edges(p, u, f))[1])
    faces, faces_alone = crowded.faces[instances["item"].face_mask], alone.faces[alone_instances["item"].face_mask]
    got = build_charts(crowded.positions.numpy(), crowded.normals.numpy(), crowded.uvs.numpy(), faces.numpy())
    want = build_charts(alone.positions.numpy(), alone.normals.numpy(), alone.uvs.numpy(), faces_alone.numpy())
    assert len(got.positions) == _item_vertices(crowded, instances)
    for name in ("face", "other", "start", "end", "own_uv", "other_uv"):
        assert (getattr(got.seams, name) == getattr(want.seams, name)).all(), name
    atlas = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert seam_ratio(crowded.positions, faces, crowded.uvs, atlas) == seam_ratio(alone.positions, faces_alone,
                                                                                  alone.uvs, atlas)
    assert welded and max(welded) <= _item_vertices(crowded, instances)


def test_projection_and_its_ideal_follow_the_instance(scenes, reference) -> None:
    crowded, instances, alone, alone_instances = scenes
    settings = ProjectionSettings(texels_per_metre=96)
    got = project_instance(crowded, instances["item"].face_mask, reference, settings, with_ideal=True)
    want = project_instance(alone, alone_instances["item"].face_mask, reference, settings, with_ideal=True)
    assert torch.equal(got.image, want.image) and torch.equal(got.mask, want.mask)
    assert got.ideal is not None and want.ideal is not None and torch.equal(got.ideal, want.ideal)


def test_close_ups_and_isolated_views_follow_the_instance(scenes, monkeypatch) -> None:
    crowded, instances, alone, alone_instances = scenes
    casters = _Counted(monkeypatch, embree)
    got = selection_closeups(crowded, instances["item"], 96.0)
    want = selection_closeups(alone, alone_instances["item"], 96.0)
    assert got is not None and want is not None
    assert torch.equal(got.uv, want.uv) and torch.equal(got.mask, want.mask)
    own = {"item": instances["item"]}
    views = sample_views(crowded, own, resolution=48, isolate=True, pixels_per_metre=64.0)
    views_alone = sample_views(alone, {"item": alone_instances["item"]}, resolution=48, isolate=True,
                               pixels_per_metre=64.0)
    assert torch.equal(views.uv, views_alone.uv) and torch.equal(views.instance_id, views_alone.instance_id)
    assert casters.vertices and max(casters.vertices) <= _item_vertices(crowded, instances)


def test_ao_rays_cast_in_chunks_answer_as_one_cast(scenes) -> None:
    crowded, *_ = scenes
    caster = embree.RayCaster(crowded.positions, crowded.faces)
    generator = torch.Generator().manual_seed(0)
    origins = torch.rand(3 * embree.MIN_RAYS_PER_THREAD, 3, generator=generator) * 8
    dirs = torch.randn(origins.shape, generator=generator)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = caster.occluded(origins, dirs, 2.0)
        torch.set_num_threads(3)
        chunked = caster.occluded(origins, dirs, 2.0)
    finally:
        torch.set_num_threads(before)
    assert 0 < int(one.sum()) < len(one) and torch.equal(one, chunked)


def test_refinement_stages_score_against_the_projection_s_ideal(scenes, reference) -> None:
    """texture.project carries `ideal` (the swatch at another phase, unblended, on its atlas); the
    distillation stages pass it on, and it is the ideal they would otherwise project again."""
    crowded, instances, *_ = scenes
    instance = instances["item"]
    ctx = lambda node: make_context(node, item="item")  # noqa: E731
    start = TextureProject({"texels_per_metre": 96.0}).run(ctx("project"), crowded, instance, reference)
    without_ideal = TextureMap(start.image, start.mask, dict(start.info), scale=start.scale)
    reprojected = ideal_atlas(crowded, instance, reference, without_ideal)
    assert start.ideal is not None and torch.equal(start.ideal, reprojected)
    assert not torch.equal(start.ideal, start.image)  # another phase: keeping the start does not score 0
    views = SampleViews({"resolution": 48, "isolate": True, "texels_per_metre": 96.0}).run(
        make_context("views"), crowded, {"item": instance})
    semantic = DistillSemantic({"steps": 2, "init_t_max": 0.4}).run(ctx("semantic"), crowded, instance, reference,
                                                                     views, start)
    pixel = DistillPixel({"steps": 2}).run(ctx("pixel"), crowded, instance, reference, views, semantic)
    assert semantic.ideal is start.ideal and pixel.ideal is start.ideal
