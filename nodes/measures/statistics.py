"""Issue 13's measure (b): the Portilla-Simoncelli texture-statistics distance of square crops inside masks."""
from __future__ import annotations

import math

import plenoptic
import torch
import torch.nn.functional as F


def _crop_corners(mask: torch.Tensor, crop: int, per_view: int) -> list[tuple[int, int]]:
    """Up to `per_view` non-overlapping `crop`² windows fully inside `mask` `[H, W]`, raster-scanned on a crop/4 grid.

    Deterministic; with the same views on both sides (result and ideal) the crops cover the same surface.
    """
    if min(mask.shape) < crop:
        return []
    inside = -F.max_pool2d(-mask[None, None].float(), crop, stride=max(crop // 4, 1))[0, 0] > 0.5
    step = max(crop // 4, 1)
    chosen: list[tuple[int, int]] = []
    for iy, ix in torch.nonzero(inside).tolist():
        y, x = iy * step, ix * step
        if all(abs(y - cy) >= crop or abs(x - cx) >= crop for cy, cx in chosen):
            chosen.append((y, x))
            if len(chosen) == per_view:
                break
    return chosen


def _crops(renders: torch.Tensor, masks: torch.Tensor, crop: int, per_view: int) -> torch.Tensor:
    """`[N, 3, crop, crop]` crops fully inside the masks, `per_view` at most per view."""
    out = [renders[b, :, y:y + crop, x:x + crop] for b in range(renders.shape[0])
           for y, x in _crop_corners(masks[b].reshape(masks.shape[-2:]), crop, per_view)]
    return torch.stack(out).float() if out else renders.new_zeros(0, 3, crop, crop)


def _ps_scales(crop: int, corr_width: int = 7) -> int:
    """Most pyramid scales (≤ 4) whose coarsest band still holds the 7×7 auto-correlation window."""
    scales = 1
    while scales < 4 and crop % 2 ** (scales + 1) == 0 and crop // 2 ** (scales + 1) >= corr_width:
        scales += 1
    return scales


def _ps_groups(crops: torch.Tensor, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Mean over crops of each Portilla-Simoncelli statistic group (per channel; undefined ones, e.g. the
    correlations of a flat crop, count as 0; min and max pixel values are dropped, as plenoptic's own loss does)."""
    with torch.no_grad():
        stats = torch.nan_to_num(model(crops), nan=0.0, posinf=0.0, neginf=0.0).mean(0, keepdim=True)
    groups = model.convert_to_dict(stats)  # redundant entries come back as NaN placeholders
    groups["pixel_statistics"] = groups["pixel_statistics"][..., :4]
    return {k: v[~torch.isnan(v)] for k, v in groups.items()}


def _fitting_crops(sides: list[tuple[torch.Tensor, torch.Tensor]], crop: int, min_crop: int, min_crops: int,
                   per_view: int) -> list[torch.Tensor]:
    """Crops of every side at the largest size, from `crop` halving down to `min_crop`, at which each side
    has at least `min_crops` of them (else the largest size at which each has one; else none)."""
    sizes = [crop >> i for i in range(8) if crop >> i >= min_crop and (crop >> i) % 2 == 0]
    fallback: list[torch.Tensor] = []
    for size in sizes:
        crops = [_crops(renders, masks, size, per_view) for renders, masks in sides]
        if min(c.shape[0] for c in crops) >= min_crops:
            return crops
        if not fallback and min(c.shape[0] for c in crops) > 0:
            fallback = crops
    return fallback


def texture_statistics_distance(
    renders: torch.Tensor,
    masks: torch.Tensor,
    ideal_renders: torch.Tensor,
    ideal_masks: torch.Tensor,
    *,
    crop: int = 64,
    min_crop: int = 32,
    min_crops: int = 4,
    per_view: int = 4,
) -> float:
    """Issue 13's measure (b): Portilla-Simoncelli texture-statistics distance (plenoptic, CPU, no weights).

    Crops: up to `per_view` non-overlapping squares per view lying fully inside each side's masks,
    `crop`×`crop`, or half that (down to `min_crop`) when fewer than `min_crops` fit on a side (the
    demo room's 128² views mostly hold no 64² square inside an instance: a floor seen past the
    furniture, a sofa's arm); NaN when none fits at `min_crop`. Compare numbers of one instance
    (same views, so the same crop size) rather than across instances. Statistics: plenoptic's
    `PortillaSimoncelli` on each RGB channel separately (4 orientations, as many scales as the crop
    allows: 3 for 64², 2 for 32²), averaged over a side's crops. Normalisation, so numbers compare
    whatever the texture's contrast: per statistic group g (pixel moments, auto-correlations,
    magnitude stds, cross-scale and cross-orientation correlations, ...), the symmetric relative
    error `|s_g - t_g| / (|s_g| + |t_g| + 1e-6)` in [0, 1], averaged over the groups with equal
    weight (0: the same statistics; 1: nothing in common, e.g. a flat crop against a textured one).
    """
    if min_crop < 14 or min_crop % 2 or crop % 2:
        raise ValueError(f"texture_statistics_distance: crops ({crop}, {min_crop}) must be even and at least 14 "
                         "(7×7 correlations)")
    crops = _fitting_crops([(renders, masks), (ideal_renders, ideal_masks)], crop, min_crop, min_crops, per_view)
    if not crops:
        return math.nan
    size = crops[0].shape[-1]
    model = plenoptic.models.PortillaSimoncelli((size, size), n_scales=_ps_scales(size))
    ga, gb = _ps_groups(crops[0], model), _ps_groups(crops[1], model)
    errors = [float((ga[k] - gb[k]).norm() / (ga[k].norm() + gb[k].norm() + 1e-6)) for k in gb if gb[k].numel()]
    return float(sum(errors) / len(errors))
