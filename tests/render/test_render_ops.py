"""nodes.render.ops: interpolate and texture follow nvdiffrast's formulas."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.render.ops import (
    bilinear_taps,
    build_mip_pyramid,
    interpolate,
    sample_taps,
    sample_texture_map,
    texture,
    uv_derivatives,
)


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def test_interpolate_known_triangle() -> None:
    attr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    tri = torch.tensor([[0, 1, 2], [3, 3, 3]], dtype=torch.int32)
    rast = torch.zeros(1, 2, 2, 4)
    rast[0, 0, 0] = torch.tensor([0.2, 0.3, 0.5, 1.0])  # triangle 0
    rast[0, 1, 1] = torch.tensor([0.1, 0.1, 0.0, 2.0])  # triangle 1: all vertices 3
    out = interpolate(attr, rast, tri)
    assert out.shape == (1, 2, 2, 2)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(out[0, 1, 1], torch.tensor([5.0, 5.0]))
    assert out[0, 0, 1].abs().sum() == 0 and out[0, 1, 0].abs().sum() == 0  # empty pixels are zero


def test_interpolate_batched_attributes_and_gradient() -> None:
    attr = _random((2, 3, 4), 0).requires_grad_(True)
    tri = torch.tensor([[0, 1, 2]])
    rast = torch.zeros(2, 1, 1, 4)
    rast[:, 0, 0] = torch.tensor([0.25, 0.25, 0.0, 1.0])
    out = interpolate(attr, rast, tri)
    expected = 0.25 * attr[:, 0] + 0.25 * attr[:, 1] + 0.5 * attr[:, 2]
    torch.testing.assert_close(out[:, 0, 0], expected)
    out.sum().backward()
    assert attr.grad is not None and torch.allclose(attr.grad[:, 2], torch.full((2, 4), 0.5))


def test_linear_clamp_equals_grid_sample_border() -> None:
    tex = _random((2, 7, 9, 3), 1)
    uv = _random((2, 5, 6, 2), 2) * 1.6 - 0.3  # includes out-of-range uvs
    ours = texture(tex, uv, filter_mode="linear", boundary_mode="clamp")
    reference = F.grid_sample(tex.permute(0, 3, 1, 2), uv * 2 - 1, mode="bilinear", padding_mode="border",
                              align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_zero_boundary_equals_grid_sample_zeros() -> None:
    tex = _random((1, 5, 6, 2), 11)
    uv = _random((1, 4, 4, 2), 12) * 1.6 - 0.3
    ours = texture(tex, uv, filter_mode="linear", boundary_mode="zero")
    reference = F.grid_sample(tex.permute(0, 3, 1, 2), uv * 2 - 1, mode="bilinear", padding_mode="zeros",
                              align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_wrap_is_periodic_and_nearest_picks_texels() -> None:
    tex = _random((1, 4, 4, 2), 3)
    uv = _random((1, 3, 3, 2), 4)
    torch.testing.assert_close(texture(tex, uv, filter_mode="linear", boundary_mode="wrap"),
                               texture(tex, uv + torch.tensor([1.0, -2.0]), filter_mode="linear", boundary_mode="wrap"),
                               atol=1e-5, rtol=1e-5)
    centres = torch.tensor([[[[0.125, 0.375], [0.875, 0.625]]]])  # (u, v) -> (col 0, row 1), (col 3, row 2)
    near = texture(tex, centres, filter_mode="nearest")
    torch.testing.assert_close(near[0, 0, 0], tex[0, 1, 0])
    torch.testing.assert_close(near[0, 0, 1], tex[0, 2, 3])
    torch.testing.assert_close(texture(tex, centres, filter_mode="linear"), near)  # bilinear at a centre = texel


def test_gradients_reach_the_texture() -> None:
    tex = _random((1, 8, 8, 3), 5).requires_grad_(True)
    uv = _random((1, 4, 4, 2), 6)
    for mode in ("linear", "nearest", "linear-mipmap-linear"):
        tex.grad = None
        kwargs = {"mip_level_bias": 1.3} if mode == "linear-mipmap-linear" else {}
        texture(tex, uv, filter_mode=mode, **kwargs).square().sum().backward()
        assert tex.grad is not None and tex.grad.abs().sum() > 0, mode


def test_mipmaps_levels_and_bias() -> None:
    tex = _random((1, 8, 8, 1), 7)
    levels = build_mip_pyramid(tex)
    assert [lvl.shape[1] for lvl in levels] == [8, 4, 2, 1]
    torch.testing.assert_close(levels[-1].reshape(()), tex.mean())
    uv = _random((1, 3, 3, 2), 8)
    torch.testing.assert_close(texture(tex, uv, mip_level_bias=0.0, filter_mode="linear-mipmap-linear"),
                               texture(tex, uv, filter_mode="linear"))
    coarsest = texture(tex, uv, mip_level_bias=10.0, filter_mode="linear-mipmap-linear")
    torch.testing.assert_close(coarsest, tex.mean().expand_as(coarsest))
    halfway = texture(tex, uv, mip_level_bias=0.5, filter_mode="linear-mipmap-linear")
    expected = 0.5 * texture(levels[0], uv) + 0.5 * texture(levels[1], uv)
    torch.testing.assert_close(halfway, expected)


def test_uv_derivatives_pick_mip_level() -> None:
    # u advances 1/8 per pixel: on a 32-texel-wide texture that is 4 texels per pixel -> mip level 2.
    height, width = 4, 8
    u = ((torch.arange(width).float() + 0.5) / width).expand(height, width)
    uv = torch.stack([u, torch.zeros_like(u)], dim=-1).unsqueeze(0)
    uv_da = uv_derivatives(uv)
    torch.testing.assert_close(uv_da[0, 1, 3], torch.tensor([1 / width, 0.0, 0.0, 0.0]))
    tex = _random((1, 32, 32, 1), 9)
    levels = build_mip_pyramid(tex)
    torch.testing.assert_close(texture(tex, uv, uv_da=uv_da, filter_mode="linear-mipmap-linear"),
                               texture(levels[2], uv, filter_mode="linear"))


def test_sample_texture_map_uses_gltf_top_left_origin() -> None:
    image = torch.zeros(3, 4, 4)
    image[0, 0, :] = 1.0  # top row red: glTF v = 0 .. 0.25
    image[2, 3, :] = 1.0  # bottom row blue
    uv = torch.tensor([[[[0.5, 0.125], [0.5, 0.875]]]])
    out = sample_texture_map(image, uv, filter_mode="nearest")
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    masked = sample_texture_map(image, uv, mask=torch.tensor([[[True, False]]]))
    assert masked[0, 0, 1].abs().sum() == 0


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 9), width=st.integers(1, 9), channels=st.integers(1, 4), seed=st.integers(0, 2**16),
       boundary=st.sampled_from(["clamp", "zero"]))
def test_texture_matches_grid_sample_for_any_size(height: int, width: int, channels: int, seed: int,
                                                   boundary: str) -> None:
    tex = _random((1, height, width, channels), seed)
    uv = _random((1, 3, 5, 2), seed + 1) * 2.0 - 0.5
    reference = F.grid_sample(tex.permute(0, 3, 1, 2), uv * 2 - 1, mode="bilinear",
                              padding_mode="border" if boundary == "clamp" else "zeros",
                              align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(texture(tex, uv, filter_mode="linear", boundary_mode=boundary),  # type: ignore[arg-type]
                               reference, atol=1e-5, rtol=1e-5)


@given(st.integers(1, 20), st.integers(1, 20), st.sampled_from(["clamp", "wrap"]), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_precomputed_taps_equal_texture_in_values_and_gradient(height: int, width: int, boundary: str,
                                                               seed: int) -> None:
    """The distillation loop's fast path (taps built once, index_add_ backward) is the same bilinear lookup."""
    image = _random((3, height, width), seed).requires_grad_(True)
    uv = _random((2, 5, 7, 2), seed + 1) * 1.4 - 0.2  # also outside [0, 1]: exercises the boundary rule
    mask = _random((2, 5, 7), seed + 2) > 0.3
    reference = sample_texture_map(image, uv, mask=mask, boundary_mode=boundary).permute(0, 3, 1, 2)
    fast = sample_taps(image, bilinear_taps(uv, height, width, mask=mask, boundary_mode=boundary))
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)
    upstream = _random(tuple(reference.shape), seed + 3)
    (grad_reference,) = torch.autograd.grad((reference * upstream).sum(), image)
    (grad_fast,) = torch.autograd.grad((fast * upstream).sum(), image)
    torch.testing.assert_close(grad_fast, grad_reference, atol=1e-5, rtol=1e-5)
