"""Issue 13's quality measures (`nodes/measures`): each test checks an ordering or a value
that a wrong implementation would miss."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nodes.measures.colour import isolated_outliers, mean_colour_delta_e76
from nodes.measures.distances import _sorted_projections, structure_distance, structure_target, structure_target_over
from nodes.measures.seams import seam_ratio
from nodes.measures.statistics import texture_statistics_distance
from nodes.scene.loader import load_scene

COLOURS = torch.tensor([[0.75, 0.55, 0.3], [0.15, 0.2, 0.35]])
VIEWS, SIZE, PERIOD = 6, 128, 16
SHEEN = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "SheenChair" / "SheenChair.gltf"


# ---- textures and render sets -------------------------------------------------------------------

def checker(h: int, w: int, period: int, phase: tuple[int, int] = (0, 0), vertical: bool = False) -> torch.Tensor:
    """Two-colour checker `[3, h, w]` of `period` texels (two squares), shifted by `phase`."""
    y, x = torch.meshgrid(torch.arange(h) + phase[0], torch.arange(w) + phase[1], indexing="ij")
    return COLOURS[(y // (period // 2) + x // (period // 2)) % 2].permute(2, 0, 1).contiguous()


def stripes(h: int, w: int, period: int, phase: tuple[int, int] = (0, 0), vertical: bool = False) -> torch.Tensor:
    """Horizontal (or vertical) two-colour stripes `[3, h, w]`."""
    y, x = torch.meshgrid(torch.arange(h) + phase[0], torch.arange(w) + phase[1], indexing="ij")
    return COLOURS[((x if vertical else y) // (period // 2)) % 2].permute(2, 0, 1).contiguous()


def disc_masks(shift: int = 0) -> torch.Tensor:
    """`[VIEWS, 1, SIZE, SIZE]` discs of growing radius (an object seen from several distances)."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    c = SIZE / 2 + shift
    return torch.stack([((y - c) ** 2 + (x - c) ** 2 < (SIZE * (0.36 + 0.02 * b)) ** 2).float()
                        for b in range(VIEWS)])[:, None]


def render_set(make: Callable[..., torch.Tensor], period: int, offset: tuple[int, int] = (0, 0),
               **kw: bool) -> torch.Tensor:
    """Views of a texture at other places of the surface (a different phase per view)."""
    return torch.stack([make(SIZE, SIZE, period, (7 * b + offset[0], 11 * b + offset[1]), **kw)
                        for b in range(VIEWS)])


def cases(make: Callable[..., torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The reference points of issue 13 item 6 (and a 90° rotation), each with its own masks."""
    ideal, other_masks = render_set(make, PERIOD), disc_masks(shift=3)
    return {
        "identical": (ideal, disc_masks()),
        "phase": (render_set(make, PERIOD, (5, 3)), other_masks),
        "twice": (render_set(make, 2 * PERIOD), other_masks),
        "flat": (ideal.mean((2, 3), keepdim=True).expand_as(ideal).contiguous(), other_masks),
        "rotated": (render_set(make, PERIOD, vertical=True), other_masks),
    }


@pytest.fixture(scope="module")
def ideal() -> tuple[torch.Tensor, torch.Tensor]:
    return render_set(checker, PERIOD), disc_masks()


# ---- structure distance and texture statistics --------------------------------------------------

@pytest.mark.parametrize("make", [stripes, checker])
def test_structure_distance_orders_the_reference_points(make: Callable[..., torch.Tensor]) -> None:
    ideal, ideal_masks = render_set(make, PERIOD), disc_masks()
    d = {k: structure_distance(r, m, ideal, ideal_masks) for k, (r, m) in cases(make).items()}
    assert d["identical"] < 0.003
    assert d["phase"] < 0.008, d  # what a perfect result scores: sampling noise only
    # the acceptance bar (2x phase + 0.01) must separate a perfect result from every baseline
    bar = 2 * d["phase"] + 0.01
    assert bar < 0.7 * d["twice"] and 3 * d["twice"] < d["flat"], d
    if make is stripes:  # (a checker turned by 90 degrees is itself)
        assert bar < 0.7 * d["rotated"], d


def test_binomial_pyramid_is_less_phase_sensitive_than_box_pooling() -> None:
    """Why structure_distance does not pool 2x2: stripes near a coarse level's Nyquist limit alias."""
    ideal, masks = render_set(stripes, PERIOD), disc_masks()
    shifted, twice = render_set(stripes, PERIOD, (5, 3)), render_set(stripes, 2 * PERIOD)

    def separation(pyramid: str) -> float:
        return (structure_distance(twice, masks, ideal, masks, pyramid=pyramid)
                / structure_distance(shifted, masks, ideal, masks, pyramid=pyramid))

    assert separation("binomial") > 2 * separation("box")


def test_structure_distance_counts_only_patches_inside_each_mask(ideal: tuple[torch.Tensor, torch.Tensor]) -> None:
    renders, masks = ideal
    garbage = torch.where(masks.bool(), renders, torch.rand(renders.shape, generator=torch.Generator().manual_seed(0)))
    clean = structure_distance(garbage, masks, renders, masks)
    assert clean < 0.003
    grown = torch.nn.functional.max_pool2d(masks, 9, stride=1, padding=4)  # four pixels of noise at the rim
    assert structure_distance(garbage, grown, renders, masks) > max(0.01, 5 * clean)
    # deterministic, and the seed matters
    assert structure_distance(garbage, grown, renders, masks) == structure_distance(garbage, grown, renders, masks)
    assert structure_distance(garbage, grown, renders, masks, seed=1) != structure_distance(garbage, grown, renders,
                                                                                            masks)


def test_structure_distance_uses_coarse_levels() -> None:
    """Checkers of 32 and 64 px periods share most 7x7 patches at full resolution (flat squares, straight
    borders); the coarse levels tell them apart."""
    ideal, masks = render_set(checker, 32), disc_masks()
    big = render_set(checker, 64)
    one, four = (structure_distance(big, masks, ideal, masks, levels=n) for n in (1, 4))
    assert four > 1.5 * one


def test_texture_statistics_distance_orders_a_checker(ideal: tuple[torch.Tensor, torch.Tensor]) -> None:
    d = {k: texture_statistics_distance(r, m, *ideal) for k, (r, m) in cases(checker).items()}
    assert d["identical"] < 1e-4
    assert d["phase"] < 0.5 * d["twice"] < 0.5 * d["flat"], d
    assert 0.0 <= min(d.values()) and max(d.values()) <= 1.0


def test_texture_statistics_distance_is_nan_without_a_crop(ideal: tuple[torch.Tensor, torch.Tensor]) -> None:
    renders, masks = ideal
    thin = torch.zeros_like(masks)
    thin[..., 60:80, :] = 1  # a 20-pixel band: not even a 32x32 square fits
    assert math.isnan(texture_statistics_distance(renders, thin, renders, masks))
    assert math.isnan(texture_statistics_distance(renders, masks, renders, thin))
    assert not math.isnan(texture_statistics_distance(renders, thin, renders, masks, crop=16, min_crop=16))
    band = torch.zeros_like(masks)
    band[..., 40:80, :] = 1  # 40 pixels: the crops fall back to 32x32
    assert texture_statistics_distance(renders, band, renders, band) == 0.0


# ---- colour ------------------------------------------------------------------------------------

def test_mean_colour_delta_e76_matches_hand_computed_values() -> None:
    # linear grey 0.18 -> Y = 0.18 -> L* = 116 * 0.18^(1/3) - 16 = 49.496; white is L* = 100, a* = b* = 0
    grey, white = torch.full((3, 4, 4), 0.18), torch.ones(3, 2, 2)
    assert mean_colour_delta_e76(grey, None, white) == pytest.approx(100 - (116 * 0.18 ** (1 / 3) - 16), abs=0.05)
    # linear (sRGB) red is L*a*b* (53.24, 80.09, 67.20): 117.33 from black
    red = torch.zeros(3, 4, 4)
    red[0] = 1
    assert mean_colour_delta_e76(red, None, torch.zeros(3, 1, 1)) == pytest.approx(117.33, abs=0.1)
    # the mean is over the mask only (and over the swatch's mask)
    half = torch.cat([red, torch.zeros(3, 4, 4)], 2)
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :4] = True
    assert mean_colour_delta_e76(half, mask, red) < 1e-3
    assert mean_colour_delta_e76(half, None, red) > 10
    assert mean_colour_delta_e76(red, None, half, mask) < 1e-3
    assert math.isnan(mean_colour_delta_e76(half, torch.zeros_like(mask), red))


# ---- isolated outliers -------------------------------------------------------------------------

def disc(size: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (y - size / 2) ** 2 + (x - size / 2) ** 2 < (0.45 * size) ** 2


def test_isolated_outliers_counts_salt_and_pepper() -> None:
    image, mask = checker(256, 256, 16), disc(256)
    assert isolated_outliers(image, mask) == 0.0
    g = torch.Generator().manual_seed(0)
    inside = torch.nonzero(mask.flatten()).flatten()
    n = round(0.01 * inside.numel())
    where = inside[torch.randperm(inside.numel(), generator=g)[:n]]
    noisy = image.clone().reshape(3, -1)
    noisy[:, where] = torch.randint(0, 2, (3, n), generator=g).float()
    noisy = noisy.reshape(image.shape)
    assert isolated_outliers(noisy, mask) == pytest.approx(0.01, abs=0.001)
    # without the isolation rule, a checker's corner texel (5 of its 9 neighbourhood texels in its
    # square) whose neighbourhood holds a speckle has no majority left and is flagged as well
    assert isolated_outliers(noisy, mask, max_similar=8) > isolated_outliers(noisy, mask) + 0.0005
    # speckle outside the mask does not count, and a smooth gradient is not speckle
    outside = torch.where(mask, image, torch.rand(image.shape, generator=g))
    assert isolated_outliers(outside, mask) == 0.0
    ramp = torch.linspace(0, 1, 256)[None, None].expand(3, 256, 256)
    assert isolated_outliers(ramp, mask) == 0.0
    # nor are the 1-px strokes of a printed label
    label = torch.full((3, 256, 256), 0.9)
    label[:, 40:200:9, 30:220] = 0.05
    label[:, 40:200, 30:220:13] = 0.05
    assert isolated_outliers(label, mask) == 0.0
    assert isolated_outliers(label, mask, max_similar=8) > 0.01


# ---- seams -------------------------------------------------------------------------------------

_CUBE_FACES = [  # origin, U axis, V axis of each face of the unit cube
    ((0, 0, 0), (1, 0, 0), (0, 1, 0)), ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, 0), (0, 1, 0), (0, 0, 1)), ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((0, 0, 0), (0, 0, 1), (1, 0, 0)), ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
]


def world_checker(p: torch.Tensor, cell: float = 0.25) -> torch.Tensor:
    """A 3-D checker `[..., 3]` whose cell borders avoid the cube's edges, so it is continuous on the surface."""
    return COLOURS[torch.floor((p + cell / 2) / cell).sum(-1).long() % 2]


def textured_cube(field: Callable[[torch.Tensor], torch.Tensor], cell: int = 64, gutter: int = 4,
                  shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit cube, one UV chart per face on a 3x2 atlas; each chart's texels (gutter included) are coloured
    by `field` at their surface point, that point moved by `shift` along the face's U axis."""
    size = cell + 2 * gutter
    height, width = 2 * size, 3 * size
    positions, uvs, faces, atlas = [], [], [], torch.zeros(3, height, width)
    t = (torch.arange(size) + 0.5 - gutter) / cell
    b, a = torch.meshgrid(t, t, indexing="ij")
    for i, axes in enumerate(_CUBE_FACES):
        o, u, v = (torch.tensor(x, dtype=torch.float32) for x in axes)
        x0, y0, base = (i % 3) * size, (i // 3) * size, len(positions)
        for ca, cb in ((0, 0), (1, 0), (1, 1), (0, 1)):
            positions.append(o + ca * u + cb * v)
            uvs.append(torch.tensor([(x0 + gutter + ca * cell) / width, (y0 + gutter + cb * cell) / height]))
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
        points = o + a[..., None] * u + b[..., None] * v + shift * u
        atlas[:, y0:y0 + size, x0:x0 + size] = field(points).permute(2, 0, 1)
    return torch.stack(positions), torch.tensor(faces), torch.stack(uvs), atlas


def test_seam_ratio_of_a_continuous_and_a_broken_cube() -> None:
    good = seam_ratio(*textured_cube(world_checker))
    assert good.seam_pairs == 4096 and good.inside_pairs == 4096
    assert good.ratio < 1.2
    assert good.inside_difference > 0.03  # the inside pairs do cross the checker's borders
    broken = seam_ratio(*textured_cube(world_checker, shift=0.125))  # each face shifted by half a cell
    assert broken.ratio > 2.0, broken
    assert seam_ratio(*textured_cube(world_checker), seed=1) != good
    assert seam_ratio(*textured_cube(world_checker)) == good


def waves(p: torch.Tensor) -> torch.Tensor:
    """A smooth, isotropic-looking colour field of the surface point `p` `[..., 3]`: six plane waves of about
    10 cycles per metre, so that a few seam lines see the same gradients as the whole plane."""
    angles = torch.tensor([0.3, 0.9, 1.7, 2.3, 2.9, 4.1])
    dirs = torch.stack([angles.cos(), angles.sin(), torch.zeros(6)], 1)
    value = 0.5 + 0.07 * torch.sin(2 * math.pi * 9.7 * (p @ dirs.T) + torch.arange(6.0)).sum(-1)
    return torch.stack([value, 0.8 * value, 1 - value], -1)


def strip_plane(field: Callable[[torch.Tensor], torch.Tensor], strips: int = 8, texels: int = 128, gap: int = 6
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unit square z = 0 cut into vertical strips, one chart each, laid out on the atlas in a shuffled
    order and every other one mirrored; each chart's texels (gutter included) hold `field` at their point."""
    wide = texels // strips
    width, height = strips * (wide + gap) + gap, texels + 2 * gap
    positions, uvs, faces, atlas = [], [], [], torch.zeros(3, height, width)
    rows = (torch.arange(height) + 0.5 - gap) / texels
    for i in range(strips):
        x0, mirror, base = gap + (5 * i + 3) % strips * (wide + gap), i % 2 == 1, len(positions)
        for cx, cy in ((0, 0), (1, 0), (1, 1), (0, 1)):
            positions.append([(i + cx) / strips, cy, 0.0])
            uvs.append([(x0 + ((1 - cx) if mirror else cx) * wide) / width, (gap + cy * texels) / height])
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
        cols = torch.arange(x0 - gap // 2, x0 + wide + gap // 2)
        local = (cols + 0.5 - x0) / texels
        y, x = torch.meshgrid(rows, (i + 1) / strips - local if mirror else i / strips + local, indexing="ij")
        atlas[:, :, cols] = field(torch.stack([x, y, torch.zeros_like(x)], -1)).permute(2, 0, 1)
    return torch.tensor(positions), torch.tensor(faces), torch.tensor(uvs), atlas


def test_seam_ratio_is_one_across_invisible_seams() -> None:
    """Eight charts of a flat square, the atlas continuous across their seams: seam pairs and inside
    pairs sample the same field at the same distance, so the ratio is 1 up to sampling."""
    positions, faces, uvs, atlas = strip_plane(waves)
    report = seam_ratio(positions, faces, uvs, atlas)
    assert 0.9 < report.ratio < 1.1, report
    assert report.inside_difference > 5 / 255  # well above the floor: the ratio is not the floor's
    assert seam_ratio(positions, faces, uvs, atlas.flip(-1)).ratio > 1.5  # charts read each other's texels


def test_seam_ratio_without_seams() -> None:
    positions = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    report = seam_ratio(positions, torch.tensor([[0, 1, 2], [0, 2, 3]]), positions[:, :2], torch.rand(3, 16, 16))
    assert report.ratio == 1.0 and report.seam_pairs == 0
    # the same quad with its vertices split but the same UVs on both sides: still no seam
    split = torch.cat([positions, positions[[0, 2]]])
    report = seam_ratio(split, torch.tensor([[0, 1, 2], [4, 5, 3]]), split[:, :2], torch.rand(3, 16, 16))
    assert report.ratio == 1.0 and report.seam_pairs == 0


@pytest.mark.slow
@pytest.mark.skipif(not SHEEN.exists(), reason="needs ../shared/assets/SheenChair")
def test_seam_ratio_on_sheen_chair_is_fast_and_sees_its_seams() -> None:
    scene = load_scene(SHEEN)
    atlas = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0))
    start = time.process_time()  # CPU seconds: the 2-core CI machine is often shared
    report = seam_ratio(scene.positions, scene.faces, scene.uvs, atlas)
    assert time.process_time() - start < 2.0
    assert report.seam_pairs == 4096 and report.inside_pairs > 1000
    assert 0.8 < report.ratio < 1.25  # white noise: neighbours differ as much as strangers


def test_structure_target_is_structure_distance_for_every_candidate() -> None:
    """One target (the ideal's side built once) scores many render sets on the same masks exactly as the
    one-shot measure does, on any thread count (the sort is split over threads)."""
    g = torch.Generator().manual_seed(5)
    masks = (torch.rand(3, 1, 80, 72, generator=g) > 0.15).float()
    masks[:, :, 20:60, 20:50] = 1
    ideal = torch.rand(3, 3, 80, 72, generator=g)
    target = structure_target(masks, ideal, masks, seed=3)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for _ in range(2):
                renders = torch.rand(3, 3, 80, 72, generator=g)
                assert target(renders) == structure_distance(renders, masks, ideal, masks, seed=3)
    finally:
        torch.set_num_threads(before)


def test_sorted_projections_are_torch_s_sort_on_any_thread_count() -> None:
    g = torch.Generator().manual_seed(1)
    points, directions = torch.randn(5000, 75, generator=g), torch.randn(75, 33, generator=g)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)  # (the product itself may round differently per thread count)
            want = (points @ directions).T.contiguous().sort(1).values
            assert torch.equal(_sorted_projections(points, directions), want)
    finally:
        torch.set_num_threads(before)


def test_one_structure_target_over_views_and_close_ups_ranks_the_ideal_first() -> None:
    """The selection measure over two render sets at once (a stage's views and close-ups): the ideal's
    own renders score below a blurred copy, which scores below a flat colour; the same inputs give the
    same number."""
    stripes = ((torch.arange(96) // 6) % 2).float()
    sets = []
    for height, width in ((64, 96), (48, 80)):
        image = stripes[None, None, None, :width].expand(2, 3, height, width).clone()
        image[:, 1] *= 0.5
        masks = torch.ones(2, 1, height, width)
        masks[:, :, :4] = 0
        sets.append((masks, image))
    target = structure_target_over(sets, max_patches=4096, projections=32, seed=0)
    ideal = target([image for _, image in sets])
    blurred = target([F.avg_pool2d(image, 5, stride=1, padding=2) for _, image in sets])
    flat = target([torch.full_like(image, 0.4) for _, image in sets])
    assert ideal < blurred < flat
    assert target([image for _, image in sets]) == ideal
