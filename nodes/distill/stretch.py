"""The swatch stretched once over an instance's UV island: distillation's 'tiled' start and the
acceptance measure's 'stretched' baseline (one definition, so the two stay the same picture)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def tiled_baseline(reference: torch.Tensor, atlas_mask: torch.Tensor) -> torch.Tensor:
    """The reference stretched once over the bbox of the instance's UV island(s), its mean colour elsewhere."""
    size = atlas_mask.shape
    out = reference.mean((1, 2))[:, None, None].expand(3, *size).clone()
    rows = torch.nonzero(atlas_mask.any(1)).flatten()
    cols = torch.nonzero(atlas_mask.any(0)).flatten()
    if rows.numel() == 0:
        return out
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    out[:, y0:y1, x0:x1] = F.interpolate(reference[None].float(), size=(y1 - y0, x1 - x0), mode="area"
                                         if reference.shape[-1] >= x1 - x0 else "bilinear")[0]
    return out
