"""Issue 25's verdict on a photo swatch laid in `tile` mode on a floor: tile seams (`nodes.measures.seams`),
invented colours (`nodes.measures.colour`), and issue 13's structure and colour (`acceptance.QualityRow`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodes.measures.colour import INVENTED_SHARE_LIMIT, invented_colour_share
from nodes.measures.seams import TileSeams, tile_period, tile_seams

from .acceptance import QualityRow


@dataclass(frozen=True)
class PhotoSwatchRow:
    """Issue 25's verdict on one tiled photo swatch: tile seams, invented colours, structure and colour."""

    name: str
    seams: TileSeams
    invented: float
    structure: float
    structure_bound: float
    delta_e: float

    def failures(self) -> list[str]:
        out = list(self.seams.failures())
        if not self.invented <= INVENTED_SHARE_LIMIT:
            out.append(f"invented colours {self.invented:.4f} > {INVENTED_SHARE_LIMIT}")
        if not self.structure <= self.structure_bound:
            out.append(f"structure {self.structure:.4f} > 2 x ideal-phase + 0.01 = {self.structure_bound:.4f}")
        if not self.delta_e <= 8:
            out.append(f"ΔE76 {self.delta_e:.2f} > 8")
        return out


def photo_row(name: str, albedo: torch.Tensor, mask: torch.Tensor, photo: torch.Tensor, photo_size: float,
              tile: torch.Tensor, tile_size: float, texels_per_metre: float, quality: QualityRow) -> PhotoSwatchRow:
    """The row for an atlas `albedo` at `texels_per_metre` of a floor laid with `tile` (the material's albedo,
    `tile_size` metres wide) made from `photo` (`photo_size` metres wide); `quality` is issue 13's
    `QualityRow` of the same atlas (structure against the photo repeated at its real size, ΔE76)."""
    period = tile_period(tile, tile_size, texels_per_metre)
    tile_at_density = F.interpolate(tile.float()[None], size=period, mode="bilinear", antialias=True,
                                    align_corners=False)[0]
    texels_per_pixel = texels_per_metre * photo_size / photo.shape[-1]
    return PhotoSwatchRow(name=name, seams=tile_seams(albedo, mask.bool(), tile_at_density, period),
                          invented=invented_colour_share(albedo, mask.bool(), photo, texels_per_pixel=texels_per_pixel),
                          structure=float(quality.structure["result"]), structure_bound=float(quality.structure_bound),
                          delta_e=float(quality.delta_e))
