"""Quality measures for distilled textures.

- `patch_sliced_wasserstein`: multi-scale patch sliced-Wasserstein distance
  between the masked pixels of renders and reference images (lower = closer).
  At each level of an average-pooling pyramid, the `p×p` RGB patches lying
  fully inside the mask are projected on `projections` random unit directions
  (drawn from a generator seeded with `seed`, so the measure is deterministic)
  and the 1-D Wasserstein-1 distances between the sorted projections are
  averaged; a colour term (1×1 patches) is added. Both sets are subsampled to
  at most `max_patches` patches with the same seeded generator.
- `binding_accuracy`: each instance must be closer to its own reference than
  to any other instance's.
- `anchor_consistency` / `detail_gain`: super-resolution diagnostics.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import kornia
import torch
import torch.nn.functional as F


def _masked_patches(images: torch.Tensor, masks: torch.Tensor | None, patch_size: int) -> torch.Tensor:
    """`[N, C*p*p]` patches of `[B, C, H, W]` whose pixels all lie inside `masks` `[B, 1, H, W]`."""
    if min(images.shape[-2:]) < patch_size:
        return images.new_zeros(0, images.shape[1] * patch_size**2)
    cols = F.unfold(images, patch_size).transpose(1, 2).reshape(-1, images.shape[1] * patch_size**2)
    if masks is None:
        return cols
    inside = F.unfold(masks.float(), patch_size).transpose(1, 2).reshape(-1, patch_size**2).min(1).values > 0.5
    return cols[inside]


def _sw1(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor, quantiles: int = 256) -> float:
    """Sliced W1 between point sets `[Na, D]`, `[Nb, D]` along unit `directions` `[D, K]`."""
    pa = (a @ directions).sort(0).values
    pb = (b @ directions).sort(0).values
    q = torch.linspace(0, 1, quantiles)
    ia = (q * (pa.shape[0] - 1)).round().long()
    ib = (q * (pb.shape[0] - 1)).round().long()
    return float((pa[ia] - pb[ib]).abs().mean())


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
    generator = torch.Generator().manual_seed(seed)
    refs = [r[None].float() for r in references]
    imgs, msk = renders.float(), (masks.float() if masks is not None else None)
    terms: list[float] = []
    for level in range(levels):
        if level:
            if min(imgs.shape[-2:]) < 2 or any(min(r.shape[-2:]) < 2 for r in refs):
                break  # nothing left to pool: coarser levels would be empty
            imgs = F.avg_pool2d(imgs, 2)
            msk = F.avg_pool2d(msk, 2) if msk is not None else None
            refs = [F.avg_pool2d(r, 2) for r in refs]
            # a pooled pixel counts only if it is fully inside the mask
            msk = (msk > 0.999).float() if msk is not None else None
        for size in ((1, patch_size) if level == 0 else (patch_size,)):
            a = _masked_patches(imgs, msk, size)
            b = torch.cat([_masked_patches(r, None, size) for r in refs])
            if a.shape[0] < 8 or b.shape[0] < 8:
                continue
            a = a[torch.randperm(a.shape[0], generator=generator)[:max_patches]]
            b = b[torch.randperm(b.shape[0], generator=generator)[:max_patches]]
            directions = torch.randn(a.shape[1], projections, generator=generator)
            directions = directions / directions.norm(dim=0, keepdim=True)
            terms.append(_sw1(a, b, directions))
    if not terms:
        return math.nan
    return float(sum(terms) / len(terms))


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
