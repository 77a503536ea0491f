"""Rasterizer backends: nvdiffrast's layout and conventions, embree == torch on SheenChair, RayCaster."""
from __future__ import annotations

import math

import pytest
import torch

from graphflow import UserError
from nodes.components.raster import Rasterizer, to_clip
from nodes.render.cameras import look_at, orbit_cameras, perspective
from nodes.render.embree import RayCaster
from nodes.render.ops import interpolate
from nodes.render.raster import get_rasterizer

from .sheenchair import load_sheen_chair

BACKENDS = ("embree", "torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_layout_on_a_hand_made_triangle(backend: str) -> None:
    # Clip-space triangle (w = 1) covering the lower-left half of a 4x4 screen.
    pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.5, 1.0], [-1.0, 1.0, -0.5, 1.0]]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = get_rasterizer(backend).rasterize(pos, tri, (4, 4))
    assert rast.shape == (1, 4, 4, 4) and rast.dtype == torch.float32
    # Row 0 is the bottom (NDC y = -0.75): the lower-left triangle fills it; the top row only at x = -0.75.
    assert (rast[0, 0, :, 3] == 1).all() and rast[0, 3, 0, 3] == 1 and (rast[0, 3, 1:] == 0).all()
    # Pixel (row 0, col 0) centre is NDC (-0.75, -0.75) = u*p0 + v*p1 + (1-u-v)*p2 -> u = .75, v = .125.
    torch.testing.assert_close(rast[0, 0, 0], torch.tensor([0.75, 0.125, 0.0, 1.0]))
    # Pixel (row 1, col 0): NDC (-0.75, -0.25): v = 0.125, u = 0.5; z = 0.5 v - 0.5 (1 - u - v).
    torch.testing.assert_close(rast[0, 1, 0], torch.tensor([0.5, 0.125, 0.0625 - 0.1875, 1.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_test_perspective_and_clipping(backend: str) -> None:
    # Two full-screen quads at distances 2 (ids 1-2) and 3 (ids 3-4); the nearer one wins everywhere.
    quad = torch.tensor([[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]])
    far_quad = torch.cat([quad, torch.full((4, 1), -3.0)], 1)
    near_quad = torch.cat([quad * 0.5, torch.full((4, 1), -2.0)], 1)
    positions = torch.cat([far_quad, near_quad])
    tri = torch.tensor([[4, 5, 6], [4, 6, 7], [0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    mvp = (perspective(60.0, 1.0, 0.5, 10.0) @ look_at(torch.zeros(3), torch.tensor([0.0, 0.0, -1.0])))[None]
    rasterizer = get_rasterizer(backend)
    rast = rasterizer.rasterize(to_clip(positions, mvp), tri, (8, 8))
    assert set(rast[0, ..., 3].unique().tolist()) <= {1.0, 2.0}
    n, f = 0.5, 10.0
    expected_zw = ((f + n) / (f - n)) - 2 * f * n / ((f - n) * 2.0)  # z/w of a point at distance 2
    torch.testing.assert_close(rast[0, ..., 2], torch.full((8, 8), expected_zw), atol=1e-5, rtol=0)
    # Perspective-correct barycentrics reproduce the world position.
    hit = to_clip(positions, mvp)  # sanity: the world variant gives the same fragments
    torch.testing.assert_close(rasterizer.rasterize_world(positions, tri, mvp, (8, 8)), rast, atol=1e-5, rtol=0)
    assert hit.shape == (1, 8, 4)
    # A near plane beyond the near quad clips it away: the far quad shows.
    mvp_clipped = (perspective(60.0, 1.0, 2.5, 10.0) @ look_at(torch.zeros(3), torch.tensor([0.0, 0.0, -1.0])))[None]
    clipped = rasterizer.rasterize(to_clip(positions, mvp_clipped), tri, (8, 8))
    assert set(clipped[0, ..., 3].unique().tolist()) <= {3.0, 4.0}


def test_embree_and_torch_agree_on_sheen_chair() -> None:
    positions, faces, _ = load_sheen_chair()
    lo, hi = positions.min(0).values, positions.max(0).values
    cameras = orbit_cameras((lo + hi) / 2, float((hi - lo).norm() / 2), 4, (10.0, 50.0), (35.0, 50.0),
                            torch.Generator().manual_seed(0))
    mvp = torch.stack([camera.mvp() for camera in cameras])
    tri = faces.to(torch.int32)
    resolution = (96, 96)
    reference = get_rasterizer("torch").rasterize(to_clip(positions.double(), mvp.double()), tri, resolution)
    embree = get_rasterizer("embree")
    for rast in (embree.rasterize_world(positions, tri, mvp, resolution),
                 embree.rasterize(to_clip(positions.double(), mvp.double()), tri, resolution)):
        covered = (rast[..., 3] > 0) | (reference[..., 3] > 0)
        assert covered.sum() > 0.1 * covered.numel()
        same = (rast[..., 3] == reference[..., 3]) & covered
        assert same.sum() >= 0.999 * covered.sum()
        assert (rast[..., :2] - reference[..., :2])[same].abs().max() <= 1e-3
        assert (rast[..., 2] - reference[..., 2])[same].abs().max() <= 1e-5


def test_protocol_and_backend_errors() -> None:
    for name in BACKENDS:
        assert isinstance(get_rasterizer(name), Rasterizer)
    assert get_rasterizer("auto").name == "embree"
    with pytest.raises(UserError, match="nvdiffrast"):
        get_rasterizer("nvdiffrast")
    with pytest.raises(UserError, match="backend"):
        get_rasterizer("opengl")  # type: ignore[arg-type]


def test_ray_caster_intersect_and_occluded() -> None:
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    caster = RayCaster(positions, torch.tensor([[0, 1, 2]]))
    origins = torch.tensor([[0.2, 0.3, 1.0], [0.9, 0.9, 1.0], [0.2, 0.3, 1.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0]] * 3)
    t, face_id, u, v = caster.intersect(origins, dirs)
    assert face_id.tolist() == [0, -1, 0] and math.isinf(float(t[1]))
    torch.testing.assert_close(t[[0, 2]], torch.ones(2))
    # Hit point = u p0 + v p1 + (1-u-v) p2 = (v, 1-u-v, 0) = (0.2, 0.3).
    torch.testing.assert_close(torch.stack([v[0], 1 - u[0] - v[0]]), torch.tensor([0.2, 0.3]))
    assert caster.occluded(origins, dirs).tolist() == [True, False, True]
    assert caster.occluded(origins, dirs, tmax=torch.tensor([2.0, 2.0, 0.5])).tolist() == [True, False, False]


def _orthographic(half_size: float, near: float, far: float) -> torch.Tensor:
    matrix = torch.eye(4)
    matrix[0, 0] = matrix[1, 1] = 1.0 / half_size
    matrix[2, 2] = -2.0 / (far - near)
    matrix[2, 3] = -(far + near) / (far - near)
    return matrix


def test_world_rasterization_fused_interpolation_and_orthographic_cameras() -> None:
    positions, faces, uvs = load_sheen_chair()
    center = (positions.min(0).values + positions.max(0).values) / 2
    eye = center + torch.tensor([1.5, 1.0, 2.0])
    view = look_at(eye, center)
    mvp = torch.stack([perspective(40.0, 1.0, 0.1, 10.0) @ view, _orthographic(0.6, 0.1, 10.0) @ view])
    tri = faces.to(torch.int32)
    embree = get_rasterizer("embree")
    rast, attributes = embree.rasterize_world_interpolate(positions, tri, mvp, (64, 64), uvs)
    reference = get_rasterizer("torch").rasterize(to_clip(positions.double(), mvp.double()), tri, (64, 64))
    covered = (rast[..., 3] > 0) | (reference[..., 3] > 0)
    same = (rast[..., 3] == reference[..., 3]) & covered
    assert covered[1].sum() > 500 and same.sum() >= 0.999 * covered.sum()
    assert (rast[..., :3] - reference[..., :3])[same].abs().max() <= 1e-4
    torch.testing.assert_close(attributes, interpolate(uvs, rast, faces), atol=1e-5, rtol=1e-5)
