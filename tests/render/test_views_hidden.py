"""views.sample for real scenes (issue 14 item 3): a part hidden inside another gets pixels when each instance's
cameras see it alone (`isolate`), and the number of views and the instance's size in them follow its size and
the texel density (`texels_per_metre`); without the new params the views are those of before, bit for bit."""
from __future__ import annotations

import blake3
import pytest
import torch
from pydantic import ValidationError

from graphflow import Keyed
from graphflow.testing import make_context
from nodes.distill.texture_param import select_instance_views
from nodes.render.nodes import SampleViews
from nodes.render.views import sample_views, view_plan
from nodes.types import Instance, Scene

from .test_render_views import _box, _merge, _quad, small_room


def _scene(named: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[Scene, Keyed[Instance]]:
    positions, faces = _merge(list(named.values()))
    face_part = torch.cat([torch.full((t.shape[0],), i, dtype=torch.int64) for i, (_, t) in enumerate(named.values())])
    corners = positions[faces]
    face_normals = torch.nn.functional.normalize(
        torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), dim=-1)
    normals = torch.zeros_like(positions)
    normals.index_add_(0, faces.flatten(), face_normals.repeat_interleave(3, dim=0))
    normals = torch.nn.functional.normalize(normals, dim=-1)
    uvs = torch.rand(positions.shape[0], 2, generator=torch.Generator().manual_seed(0))
    tangents = torch.tensor([[1.0, 0.0, 0.0, 1.0]]).expand(positions.shape[0], 4).contiguous()
    scene = Scene(positions=positions, faces=faces, normals=normals, uvs=uvs, tangents=tangents,
                  face_part=face_part, part_names=tuple(named), part_info=tuple({"node": n} for n in named))
    instances = {}
    for index, name in enumerate(named):
        mask = face_part == index
        used = positions[faces[mask].flatten()]
        instances[name] = Instance(name=name, face_mask=mask, bbox=torch.stack([used.min(0).values, used.max(0).values]))
    return scene, Keyed(instances)


def lamp_room(bulb: float = 0.05, shade: float = 0.3) -> tuple[Scene, Keyed[Instance]]:
    """A floor, a wall, a closed lamp shade (a box shell of half-size `shade`) and a bulb (half-size `bulb`)
    inside it that no outside view sees."""
    return _scene({
        "floor": _quad([-2, 0, 2], [4, 0, 0], [0, 0, -4]),
        "wall": _quad([-2, 0, -2], [4, 0, 0], [0, 2.5, 0]),
        "shade": _box([-shade, 0.8 - shade, -shade], [shade, 0.8 + shade, shade]),
        "bulb": _box([-bulb, 0.8 - bulb, -bulb], [bulb, 0.8 + bulb, bulb]),
    })


def test_hidden_bulb_gets_pixels_only_when_its_cameras_see_it_alone() -> None:
    # A bulb nearly as large as its shade, framed from afar (margin 2): no candidate camera stands inside the
    # shade, so with the whole scene drawn the bulb is hidden from all of them.
    scene, instances = lamp_room(bulb=0.15, shade=0.16)
    whole = sample_views(scene, instances, count=4, resolution=48, backend="embree", margin=2.0)
    with pytest.raises(ValueError, match="fewer than 16 pixels"):
        select_instance_views(whole, "bulb")  # the failure: the shade hides it from every camera
    alone = sample_views(scene, instances, count=4, resolution=48, room_camera_count=2, backend="embree", margin=2.0,
                         isolate=True)
    bulb = alone.instance_names.index("bulb")
    own = torch.tensor([t == "bulb" for t in alone.view_target])
    assert (alone.instance_id[own] == bulb).flatten(1).sum(1).min() >= 16  # every own view shows it
    assert set(alone.instance_id[own].unique().tolist()) == {-1, bulb}  # and nothing else
    assert select_instance_views(alone, "bulb").uv.shape[0] == 4
    # Fragments carry the scene's triangle ids and the bulb's own positions (not another part's).
    triangle = alone.rast[own][..., 3].round().long() - 1
    covered = triangle >= 0
    assert bool(scene.face_part[triangle[covered]].eq(list(instances).index("bulb")).all())
    inside = alone.position[own][covered]
    assert float(inside.abs()[:, [0, 2]].max()) < 0.151 and float((inside[:, 1] - 0.8).abs().max()) < 0.151
    # Room cameras still see the whole scene, occlusion included: the bulb never shows there.
    room = torch.tensor([t == "" for t in alone.view_target])
    assert int(room.sum()) == 2 and not bool((alone.instance_id[room] == bulb).any())
    assert len(set(alone.instance_id[room].unique().tolist()) - {-1}) >= 2


def test_default_views_are_bit_identical_to_before() -> None:
    """Digest of views made before these params existed (same scene, params and machine set-up): the default
    path must not move, so cached `views` and everything after them stay valid."""
    scene, instances = small_room()
    views = sample_views(scene, instances, count=2, resolution=16, room_camera_count=1, backend="embree", seed=3)
    again = sample_views(scene, instances, count=2, resolution=16, room_camera_count=1, backend="embree", seed=3,
                         isolate=False, pixels_per_metre=0.0, min_count=1, max_count=2)
    digest = blake3.blake3(b"".join(getattr(views, f).contiguous().numpy().tobytes() for f in
                                    ("rast", "uv", "normal", "position", "instance_id", "mvp"))).hexdigest()
    assert digest == EXPECTED_DEFAULT_DIGEST
    assert torch.equal(views.rast, again.rast) and views.view_target == again.view_target


EXPECTED_DEFAULT_DIGEST = "7fdb8a724400b235cc7b23c7cbaa322746ef677f600dd2fa9c17026f3bd36f78"  # HEAD before issue 14


def test_view_count_and_footprint_follow_size_and_density() -> None:
    scene, instances = lamp_room()
    plan = {name: view_plan(scene, inst, count=8, resolution=64, pixels_per_metre=32.0, min_count=3, max_count=24,
                            margin=1.1) for name, inst in instances.items()}
    assert (plan["bulb"].count, plan["bulb"].footprint, plan["bulb"].closeup) == (3, 32, False)  # small: few, small
    assert not plan["shade"].closeup and plan["shade"].count > 3 and 32 < plan["shade"].footprint < 64
    assert plan["floor"].closeup and plan["floor"].count > plan["wall"].count > 3  # 16 m2 > 10 m2
    denser = view_plan(scene, instances["floor"], count=8, resolution=64, pixels_per_metre=64.0, min_count=3,
                       max_count=100, margin=1.1)
    assert denser.count >= 3.5 * plan["floor"].count  # 4x the pixels at twice the density
    views = sample_views(scene, instances, resolution=64, pixels_per_metre=32.0, min_count=3, max_count=24,
                         backend="embree", isolate=True)
    counts = {name: views.view_target.count(name) for name in instances}
    assert counts == {name: p.count for name, p in plan.items()}
    bulb = views.instance_names.index("bulb")
    own = torch.tensor([t == "bulb" for t in views.view_target])
    # The bulb (0.17 m across) spans about its 32-pixel footprint, not the whole 64-pixel frame.
    rows = (views.instance_id[own] == bulb).any(2).sum(1)
    assert int(rows.max()) <= 32 and int(rows.min()) >= 8


def test_node_params() -> None:
    with pytest.raises(ValidationError, match="min_count"):
        SampleViews({"texels_per_metre": 128, "min_count": 9, "max_count": 4})
    scene, instances = lamp_room()
    node = SampleViews({"resolution": 32, "texels_per_metre": 64, "texels_per_pixel": 2, "min_count": 2,
                        "max_count": 6, "isolate": True, "backend": "embree"})
    views = node.run(make_context(), scene=scene, instances=instances)
    assert views.view_target.count("bulb") == 2 and views.view_target.count("floor") == 6
