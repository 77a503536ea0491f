"""Distances between renders and references, and the super-resolution measures.

- `patch_sliced_wasserstein`: multi-scale patch sliced-Wasserstein distance
  between the masked pixels of renders and reference images (lower = closer).
  At each level of an average-pooling pyramid, the `p×p` RGB patches lying
  fully inside the mask are projected on `projections` random unit directions
  (drawn from a generator seeded with `seed`, so the measure is deterministic)
  and the 1-D Wasserstein-1 distances between the sorted projections are
  averaged; a colour term (1×1 patches) is added. Both sets are subsampled to
  at most `max_patches` patches with the same seeded generator.
- `structure_distance`: issue 13's measure (a), the same core between two
  masked render sets (the result's and the ideal's), 7×7 patches, 4 levels of
  a binomial pyramid; `structure_target` / `structure_target_over` precompute
  the ideal's side for many candidates.
- `distance_matrix` / `binding_accuracy`: each instance must be closer to its
  own reference than to any other instance's.
- `superres_report` (`psnr`, `high_frequency_energy`): anchor consistency and
  detail gain of a super-resolved texture.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from nodes.parallel import chunk_bounds, map_chunks

Side = list[tuple[torch.Tensor, torch.Tensor | None]]  # groups of images `[B, C, H, W]` and masks `[B, 1, H, W]`




def _inside_positions(images: torch.Tensor, masks: torch.Tensor | None, patch_size: int) -> torch.Tensor:
    """`[N, 3]` (b, y, x) top-left corners of the `p×p` windows lying fully inside `masks`, in unfold order."""
    b, _, h, w = images.shape
    if masks is None:
        inside = torch.ones(b, h - patch_size + 1, w - patch_size + 1, dtype=torch.bool)
    else:  # min-pool: a window counts only when every pixel is inside
        inside = -F.max_pool2d(-masks.float(), patch_size, stride=1)[:, 0] > 0.5
    return torch.nonzero(inside)


def _gather_patches(images: torch.Tensor, corners: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`[N, C*p*p]` patches at `corners`, flattened like `F.unfold` (channel, row, column)."""
    _, c, h, w = images.shape
    k = torch.arange(patch_size)
    offsets = (torch.arange(c)[:, None, None] * (h * w) + k[None, :, None] * w + k[None, None, :]).reshape(-1)
    starts = corners[:, 0] * (c * h * w) + corners[:, 1] * w + corners[:, 2]
    return images.reshape(-1)[starts[:, None] + offsets[None, :]]


def _side_corners(side: Side, patch_size: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Per group of one side large enough for the patch size: its index in `side`, its images and the
    corners of its windows fully inside its masks."""
    return [(g, img, _inside_positions(img, m, patch_size)) for g, (img, m) in enumerate(side)
            if min(img.shape[-2:]) >= patch_size]


@dataclass(frozen=True)
class _Drawn:
    """Which windows of a side one term uses: `pick` (flat window numbers, in draw order), the group of
    each and the group boundaries in the flat numbering."""

    pick: torch.Tensor
    group_of: torch.Tensor
    ends: torch.Tensor
    counts: torch.Tensor


def _draw_windows(groups: list[tuple[int, torch.Tensor, torch.Tensor]], max_patches: int,
                  generator: torch.Generator) -> _Drawn:
    """At most `max_patches` of the windows of `groups`, in a seeded random order: that of `randperm` over
    all windows, group after group, as `F.unfold` lists them."""
    counts = torch.tensor([c.shape[0] for *_, c in groups], dtype=torch.long)
    ends = torch.cumsum(counts, 0)
    pick = torch.randperm(int(ends[-1]), generator=generator)[:max_patches]
    return _Drawn(pick, torch.searchsorted(ends, pick, right=True), ends, counts)


def _gather_drawn(images: list[torch.Tensor], corners: list[torch.Tensor], drawn: _Drawn, patch_size: int
                  ) -> torch.Tensor:
    """The drawn windows' patches `[N, C*p*p]`, gathered from `images` (one per group) at their `corners`.

    Only the drawn windows are gathered: an 8-view 128² render set has ~10⁵ windows of 147 values."""
    out = torch.empty(drawn.pick.numel(), images[0].shape[1] * patch_size**2)
    for g, (img, group_corners) in enumerate(zip(images, corners, strict=True)):
        sel = drawn.group_of == g
        if bool(sel.any()):
            start = drawn.ends[g] - drawn.counts[g]
            out[sel] = _gather_patches(img.float(), group_corners[drawn.pick[sel] - start], patch_size)
    return out


def _sorted_projections(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """`[K, N]`: the points `[N, D]` projected on the unit `directions` `[D, K]`, each row sorted.

    numpy's sort (SIMD quicksort) gives the same values as torch's several times faster on CPU, and rows are
    sorted on the task's threads at once (`nodes.parallel`): this sort was most of candidate scoring."""
    rows = (points @ directions).T.contiguous().numpy()
    out = np.empty_like(rows)

    def sort(lo: int, hi: int) -> None:
        out[lo:hi] = np.sort(rows[lo:hi], axis=1)

    map_chunks(sort, chunk_bounds(rows.shape[0], max(1, SORT_CHUNK_VALUES // max(rows.shape[1], 1))))
    return torch.from_numpy(out)


def _quantile_index(count: int, quantiles: int = 256) -> torch.Tensor:
    return (torch.linspace(0, 1, quantiles) * (count - 1)).round().long()


# Sorting fewer values than this per thread costs more in handing over than it saves.
SORT_CHUNK_VALUES = 65536

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _pool_images(images: torch.Tensor, pyramid: str) -> torch.Tensor:
    """One pyramid step of images: 2×2 average (`box`) or the 5-tap binomial low-pass, every other pixel."""
    if pyramid == "box":
        return F.avg_pool2d(images, 2)
    c = images.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), kernel, groups=c, stride=2)  # every other pixel


def _pool_masks(masks: torch.Tensor | None, pyramid: str) -> torch.Tensor | None:
    """One pyramid step of masks: a coarse pixel is inside only when its whole footprint was (outside the
    image counts as outside the mask)."""
    if masks is None:
        return None
    if pyramid == "box":
        return (F.avg_pool2d(masks, 2) > 0.999).float()
    return (-F.max_pool2d(-F.pad(masks, (2, 2, 2, 2)), 5, stride=2) > 0.999).float()  # every other pixel


def _pool_side(side: Side, pyramid: str = "box") -> Side:
    """One pyramid step; a coarse pixel is inside only when its whole footprint was.

    `box`: 2×2 average pooling (aliases: stripes of a period near 4 pooled pixels look different at every
    phase). `binomial`: the 5-tap binomial (Burt-Adelson) low-pass, then every other pixel, so a pattern
    finer than the level's Nyquist limit fades to its mean instead of aliasing into phase-dependent bands.
    """
    return [(_pool_images(img, pyramid), _pool_masks(m, pyramid)) for img, m in side]


@dataclass(frozen=True)
class _Term:
    """One sliced-W1 term: the windows drawn from side a, the directions, and side b's sorted projections
    at the quantiles (everything that does not depend on side a's pixels)."""

    level: int
    size: int
    groups: list[int]  # side a's groups large enough for the patch size
    corners: list[torch.Tensor]
    drawn: _Drawn
    directions: torch.Tensor
    target: torch.Tensor  # [K, Q]


class SlicedTarget:
    """The multi-scale patch sliced-W1 distance from a fixed side b to any images on side a's masks.

    Both patch distances (`patch_sliced_wasserstein`, `structure_distance`) are this one core. Everything
    that does not depend on side a's pixels (windows inside the masks, the seeded draws, directions, side b's
    pyramid and sorted projections) is computed once here, so a stage that scores several candidates on the
    same views against the same ideal pays for side b once; `__call__` gives the same number as the
    one-shot function. Mean over pyramid levels (and a colour term at level 0) of sliced W1.

    A level is skipped when either side has fewer than 8 patches there (a small instance in a batch run);
    pooling stops when an image of either side is too small to pool.
    """

    def __init__(self, side_a_masks: Side, side_b: Side, *, patch_size: int, levels: int, projections: int,
                 max_patches: int, seed: int, pyramid: str = "box") -> None:
        if pyramid not in ("box", "binomial"):
            raise ValueError(f"pyramid must be 'box' or 'binomial', not {pyramid!r}")
        self.pyramid = pyramid
        generator = torch.Generator().manual_seed(seed)
        # Side a's images only give shapes here: one zero channel stands in for the pixels.
        side_a = [(torch.zeros(img.shape[0], 1, *img.shape[-2:]), m.float() if m is not None else None)
                  for img, m in side_a_masks]
        side_b = [(img.float(), m.float() if m is not None else None) for img, m in side_b]
        self.terms: list[_Term] = []
        for level in range(levels):
            if level:
                if any(min(img.shape[-2:]) < 2 for img, _ in side_a + side_b):
                    break  # nothing left to pool: coarser levels would be empty
                side_a, side_b = _pool_side(side_a, pyramid), _pool_side(side_b, pyramid)
            for size in ((1, patch_size) if level == 0 else (patch_size,)):
                groups_a, groups_b = _side_corners(side_a, size), _side_corners(side_b, size)
                if sum(c.shape[0] for *_, c in groups_a) < 8 or sum(c.shape[0] for *_, c in groups_b) < 8:
                    continue
                drawn_a = _draw_windows(groups_a, max_patches, generator)
                drawn_b = _draw_windows(groups_b, max_patches, generator)
                b = _gather_drawn([img for _, img, _ in groups_b], [c for *_, c in groups_b], drawn_b, size)
                directions = torch.randn(b.shape[1], projections, generator=generator)
                directions = directions / directions.norm(dim=0, keepdim=True)
                target = _sorted_projections(b, directions)[:, _quantile_index(b.shape[0])]
                self.terms.append(_Term(level, size, [g for g, *_ in groups_a], [c for *_, c in groups_a], drawn_a,
                                        directions, target))
        self._groups = len(side_a_masks)

    def __call__(self, images: list[torch.Tensor]) -> float:
        """The distance of side a's `images` (one per group of the masks given at construction)."""
        if not self.terms:
            return math.nan
        if len(images) != self._groups:
            raise ValueError(f"expected {self._groups} image group(s), got {len(images)}")
        pooled, level, values = [img.float() for img in images], 0, []
        for term in self.terms:
            while level < term.level:
                pooled, level = [_pool_images(img, self.pyramid) for img in pooled], level + 1
            a = _gather_drawn([pooled[i] for i in term.groups], term.corners, term.drawn, term.size)
            pa = _sorted_projections(a, term.directions)[:, _quantile_index(a.shape[0])]
            values.append(float((pa - term.target).abs().T.contiguous().mean()))  # same order as before
        return float(sum(values) / len(values))


def _pyramid_sliced_wasserstein(side_a: Side, side_b: Side, *, patch_size: int, levels: int, projections: int,
                                max_patches: int, seed: int, pyramid: str = "box") -> float:
    """The one-shot distance: a `SlicedTarget` from side b, applied to side a's images."""
    target = SlicedTarget(side_a, side_b, patch_size=patch_size, levels=levels, projections=projections,
                          max_patches=max_patches, seed=seed, pyramid=pyramid)
    return target([img for img, _ in side_a])


def patch_sliced_wasserstein(
    renders: torch.Tensor,
    masks: torch.Tensor | None,
    references: Sequence[torch.Tensor] | torch.Tensor,
    *,
    patch_size: int = 5,
    levels: int = 3,
    projections: int = 64,
    max_patches: int = 8192,
    seed: int = 0,
) -> float:
    """Mean over pyramid levels (plus colours) of the patch sliced-W1 distance.

    renders `[B, 3, H, W]` and masks `[B, 1, H, W]` (None: all pixels);
    references: images `[3, h, w]` (all pixels count).
    """
    return _pyramid_sliced_wasserstein([(renders, masks)], [(r[None], None) for r in references],
                                       patch_size=patch_size, levels=levels, projections=projections,
                                       max_patches=max_patches, seed=seed)


def structure_distance(
    renders: torch.Tensor,
    masks: torch.Tensor,
    ideal_renders: torch.Tensor,
    ideal_masks: torch.Tensor,
    *,
    levels: int = 4,
    patch_size: int = 7,
    projections: int = 64,
    max_patches: int = 8192,
    seed: int = 0,
    pyramid: str = "binomial",
) -> float:
    """Issue 13's measure (a): multi-scale 7×7-patch sliced W1 between renders and the ideal's renders.

    Both sides are render sets `[B, 3, H, W]` with their own masks `[B, 1, H, W]` (the result's
    and the ideal's renders of the same views, or any two sets): only patches fully inside a
    side's mask count, on `levels` pyramid levels (a coarse pixel counts when its whole footprint
    is inside; a level where either side has fewer than 8 patches is skipped), plus a colour term
    (1×1 patches) at level 0. The pyramid is binomial (Burt-Adelson 5-tap low-pass, then every other
    pixel) by default, not 2×2 average pooling (`pyramid="box"`, what `patch_sliced_wasserstein`
    uses): box pooling aliases a pattern near a coarse level's Nyquist limit into phase-dependent
    bands, so the ideal at another phase (what a perfect result scores) measured 0.009-0.015 on
    6 disc-masked 128² views of 12-24 px stripes and checkers, against 0.003-0.005 binomial, while
    the same pattern at twice the size stays at 0.033-0.05 (tests/measures/test_quality_measures.py).
    Comparing with renders of
    the ideal (the swatch repeated at its real size) rather than with the swatch image itself
    means the scale, the views' foreshortening and the shading are the same on both sides, so
    only the texture differs. Seeded, so the same inputs give the same number.
    """
    return structure_target(masks, ideal_renders, ideal_masks, levels=levels, patch_size=patch_size,
                            projections=projections, max_patches=max_patches, seed=seed, pyramid=pyramid)(renders)


def structure_target(masks: torch.Tensor, ideal_renders: torch.Tensor, ideal_masks: torch.Tensor, *,
                     levels: int = 4, patch_size: int = 7, projections: int = 64, max_patches: int = 8192,
                     seed: int = 0, pyramid: str = "binomial") -> Callable[[torch.Tensor], float]:
    """`renders -> structure_distance(renders, masks, ideal_renders, ideal_masks, ...)` for many render sets
    on the same `masks` (candidates of one stage on the same views): the ideal's side is built once."""
    target = SlicedTarget([(masks, masks)], [(ideal_renders, ideal_masks)], patch_size=patch_size, levels=levels,
                          projections=projections, max_patches=max_patches, seed=seed, pyramid=pyramid)
    return lambda renders: target([renders])


def structure_target_over(view_sets: Sequence[tuple[torch.Tensor, torch.Tensor]], *, levels: int = 4,
                          patch_size: int = 7, projections: int = 64, max_patches: int = 8192, seed: int = 0,
                          pyramid: str = "binomial") -> Callable[[Sequence[torch.Tensor]], float]:
    """One structure distance over several render sets at once (a stage's views and its close-ups):
    `view_sets` are (masks `[B, 1, H, W]`, the ideal's renders on them) pairs; both sides draw their
    patches from all sets together (each set a group, as `F.unfold` lists them), so a candidate costs one
    measure whatever the number of sets. Returns `renders (one per set) -> distance`."""
    target = SlicedTarget([(masks, masks) for masks, _ in view_sets], [(ideal, masks) for masks, ideal in view_sets],
                          patch_size=patch_size, levels=levels, projections=projections, max_patches=max_patches,
                          seed=seed, pyramid=pyramid)
    return lambda renders: target(list(renders))


def distance_matrix(
    renders: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    references: Mapping[str, Sequence[torch.Tensor]],
    **kwargs: object,
) -> dict[str, dict[str, float]]:
    """`D[instance][reference] = SW(renders of instance, reference images)`."""
    return {
        name: {ref: patch_sliced_wasserstein(imgs, msk, images, **kwargs) for ref, images in references.items()}
        for name, (imgs, msk) in renders.items()
    }


def binding_accuracy(distances: Mapping[str, Mapping[str, float]]) -> float:
    """Share of instances whose own reference is strictly the closest one."""
    if not distances:
        return math.nan
    hits = 0
    for name, row in distances.items():
        own = row[name]
        hits += all(own < d for other, d in row.items() if other != name)
    return hits / len(distances)


def high_frequency_energy(image: torch.Tensor, mask: torch.Tensor | None = None, sigma: float = 1.0) -> float:
    """Mean squared difference between an image `[3, H, W]` and its Gaussian blur (on `mask`)."""
    x = image[None].float()
    k = 2 * math.ceil(3 * sigma) + 1
    blurred = kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")
    energy = ((x - blurred) ** 2).sum(1)[0]
    if mask is not None:
        m = mask.bool()
        return float(energy[m].mean()) if bool(m.any()) else 0.0
    return float(energy.mean())


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    err = (a.float() - b.float()) ** 2
    err = err.mean(0)
    mse = float(err[mask.bool()].mean()) if mask is not None else float(err.mean())
    return float("inf") if mse <= 0 else 10 * math.log10(1.0 / mse)


def superres_report(
    output: torch.Tensor, anchor: torch.Tensor, output_mask: torch.Tensor, anchor_mask: torch.Tensor,
    reference: torch.Tensor, factor: int,
) -> dict[str, float]:
    """Anchor consistency (area-downsampled output vs the input texture) and detail gain.

    detail gain = HF energy of the output / HF energy of the reference at the
    same texel scale (1 = as much high-frequency detail as the reference);
    also the input's ratio for comparison.
    """
    down = F.interpolate(output[None], size=anchor.shape[-2:], mode="area")[0]
    l1 = float((down - anchor).abs().mean(0)[anchor_mask.bool()].mean()) if bool(anchor_mask.any()) else 0.0
    ref_hf = high_frequency_energy(reference)
    up_anchor = F.interpolate(anchor[None], size=output.shape[-2:], mode="bilinear", align_corners=False)[0]
    return {
        "anchor_psnr": psnr(down, anchor, anchor_mask),
        "anchor_l1": l1,
        "detail_gain": high_frequency_energy(output, output_mask) / max(ref_hf, 1e-12),
        "detail_gain_input": high_frequency_energy(up_anchor, output_mask) / max(ref_hf, 1e-12),
        "factor": float(factor),
    }
