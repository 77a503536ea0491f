"""nodes.render.uv_raster: texel fragments in glTF uv space."""
from __future__ import annotations

import dataclasses
import time

import torch

from nodes.render.uv_raster import dilate_into_empty, fill_atlas_gutter, texel_fragments, uv_island_mask
from nodes.types import Scene


def _quad_scene(uv_scale: float = 1.0) -> Scene:
    """A unit quad in the XY plane at z = 2 whose UVs cover [0, uv_scale]^2 (glTF: v down, so y = 1 - v)."""
    positions = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) * uv_scale
    faces = torch.tensor([[0, 3, 2], [0, 2, 1]])
    normals = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3).contiguous()
    tangents = torch.tensor([[1.0, 0.0, 0.0, 1.0]]).expand(4, 4).contiguous()
    return Scene(positions=positions, faces=faces, normals=normals, uvs=uvs, tangents=tangents,
                 face_part=torch.zeros(2, dtype=torch.int64), part_names=("quad",),
                 part_info=({"node": "quad", "mesh": "quad", "primitive": 0, "material": "m"},))


def test_quad_covers_every_texel_with_correct_positions() -> None:
    scene = _quad_scene()
    size = 16
    frags = texel_fragments(scene, torch.ones(2, dtype=torch.bool), size)
    assert frags.mask.all()
    assert set(frags.face_id.unique().tolist()) == {0, 1}
    centres = (torch.arange(size).float() + 0.5) / size
    # Texel (row j, col i) is at uv ((i+.5)/size, (j+.5)/size) -> x = u, y = 1 - v.
    torch.testing.assert_close(frags.position[..., 0], centres.expand(size, size), atol=1e-5, rtol=0)
    torch.testing.assert_close(frags.position[..., 1], (1 - centres)[:, None].expand(size, size), atol=1e-5, rtol=0)
    torch.testing.assert_close(frags.position[..., 2], torch.full((size, size), 2.0))
    torch.testing.assert_close(frags.bary.sum(-1), torch.ones(size, size))
    torch.testing.assert_close(frags.normal, torch.tensor([0.0, 0.0, 1.0]).expand(size, size, 3))
    torch.testing.assert_close(frags.tangent, torch.tensor([1.0, 0.0, 0.0, 1.0]).expand(size, size, 4))


def test_face_mask_and_partial_islands() -> None:
    scene = _quad_scene(uv_scale=0.5)
    frags = texel_fragments(scene, torch.tensor([True, False]), 8)
    # Face 0 covers the half of the [0, .5]^2 square with v >= u: 6 texel centres strictly inside, plus
    # the 4 on the shared diagonal, which belong to whichever face the ray caster reports.
    assert 6 <= int(frags.mask.sum()) <= 10 and (frags.face_id[frags.mask] == 0).all()
    rows, cols = torch.nonzero(frags.mask, as_tuple=True)
    assert (rows >= cols).all() and rows.max() < 4
    assert (frags.face_id[~frags.mask] == -1).all() and frags.position[~frags.mask].abs().sum() == 0
    island = uv_island_mask(scene.uvs, scene.faces, 8)
    assert island[:4, :4].all() and not island[4:].any() and not island[:, 4:].any()


def test_dilate_fills_the_ring_around_islands() -> None:
    image = torch.zeros(2, 6, 6)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[2:4, 2:4] = True
    image[:, 2:4, 2:4] = torch.tensor([1.0, 3.0]).view(2, 1, 1)
    out = dilate_into_empty(image, mask, iterations=1)
    assert torch.equal(out[:, 2:4, 2:4], image[:, 2:4, 2:4])
    torch.testing.assert_close(out[:, 1:5, 1:5], torch.tensor([1.0, 3.0]).view(2, 1, 1).expand(2, 4, 4))
    assert out[:, 0].abs().sum() == 0  # two rings away: untouched after one iteration
    full = dilate_into_empty(image, mask, iterations=3)
    torch.testing.assert_close(full, torch.tensor([1.0, 3.0]).view(2, 1, 1).expand(2, 6, 6))


def test_texel_fragments_speed_on_many_faces() -> None:
    # 20k faces at 1024^2 must stay within a few seconds (brief: SheenChair-sized instances).
    grid = 100
    ys, xs = torch.meshgrid(torch.arange(grid + 1).float(), torch.arange(grid + 1).float(), indexing="ij")
    uvs = torch.stack([xs, ys], -1).reshape(-1, 2) / grid
    idx = torch.arange((grid + 1) ** 2).reshape(grid + 1, grid + 1)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten(), idx[1:, 1:].flatten(), idx[1:, :-1].flatten()
    faces = torch.cat([torch.stack([a, d, c], 1), torch.stack([a, c, b], 1)])
    count = uvs.shape[0]
    scene = Scene(positions=torch.cat([uvs, torch.zeros(count, 1)], 1), faces=faces,
                  normals=torch.tensor([[0.0, 0.0, 1.0]]).expand(count, 3).contiguous(), uvs=uvs,
                  tangents=torch.tensor([[1.0, 0.0, 0.0, 1.0]]).expand(count, 4).contiguous(),
                  face_part=torch.zeros(faces.shape[0], dtype=torch.int64), part_names=("grid",),
                  part_info=({},))
    start = time.perf_counter()
    frags = texel_fragments(scene, torch.ones(faces.shape[0], dtype=torch.bool), 1024)
    elapsed = time.perf_counter() - start
    assert frags.mask.all()
    assert elapsed < 5.0, f"texel_fragments took {elapsed:.2f}s"


def test_dilate_with_many_iterations_fills_everything_quickly() -> None:
    size = 512
    image = torch.zeros(3, size, size)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[10:20, 30:40] = True
    image[:, 10:20, 30:40] = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1)
    start = time.perf_counter()
    out = dilate_into_empty(image, mask, iterations=size)
    assert time.perf_counter() - start < 3.0
    torch.testing.assert_close(out, torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, size, size))
    partial = dilate_into_empty(image, mask, iterations=6)
    assert partial[0, 10:20, 24].eq(0.2).all() and partial[0, 10:20, 23].eq(0.0).all()


def test_uvs_wrap_mod_one() -> None:
    # The quad's UVs shifted by whole tiles cover the atlas exactly as the untiled quad does (glTF REPEAT).
    scene = _quad_scene()
    shifted = dataclasses.replace(scene, uvs=scene.uvs + torch.tensor([2.0, -1.0]))
    plain = texel_fragments(scene, torch.ones(2, dtype=torch.bool), 16)
    tiled = texel_fragments(shifted, torch.ones(2, dtype=torch.bool), 16)
    assert tiled.mask.all()
    torch.testing.assert_close(tiled.position, plain.position, atol=1e-5, rtol=0)


def test_a_triangle_across_the_border_covers_both_sides() -> None:
    # One triangle spanning u in [0.75, 1.25]: its part past u = 1 lands at u in [0, 0.25].
    uvs = torch.tensor([[0.75, 0.0], [1.25, 0.0], [0.75, 1.0]])
    island = uv_island_mask(uvs, torch.tensor([[0, 1, 2]]), 8)
    assert island[:, 6:].any() and island[:, :2].any() and not island[:, 2:6].any()
    # The texel at u = 0.0625 shows the surface point at u = 1.0625 of the unwrapped triangle.
    shifted = uv_island_mask(uvs - torch.tensor([0.5, 0.0]), torch.tensor([[0, 1, 2]]), 8)
    assert torch.equal(island.roll(-4, dims=1), shifted)


def test_fill_atlas_gutter_reaches_the_whole_atlas() -> None:
    image = torch.zeros(3, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[5:9, 5:9] = True
    image[:, 5:9, 5:9] = 0.25
    out = fill_atlas_gutter(image, mask)
    torch.testing.assert_close(out, torch.full_like(image, 0.25))
    assert torch.equal(fill_atlas_gutter(image, torch.zeros_like(mask)), image)
