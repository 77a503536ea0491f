"""The rasterizer contract shared by every backend, and the registry of backends by name.

Each backend module (`nodes.render.embree`, `torch_raster`, `nvdiffrast_backend`)
registers its factory in `RASTERIZERS` when imported; `nodes.render.raster`
imports them all, adds "auto" and is where callers resolve a name.

Every backend returns exactly nvdiffrast's `rasterize` output:
`rast[b, y, x] = (u, v, z/w, triangle_id + 1)` as float32, zeros where no
triangle covers the pixel centre; input positions are clip space `[B, V, 4]`;
pixel centres are at NDC `((2x + 1)/W - 1, (2y + 1)/H - 1)` so row 0 is the
*bottom* of the image; u is the perspective-correct barycentric weight of the
triangle's vertex 0 and v of vertex 1; the visible fragment is the one with
the smallest z/w in [-1, 1]. Both front and back faces are drawn (nvdiffrast
has no culling).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import torch

from .registry import ComponentRegistry

BackendName = Literal["auto", "embree", "torch", "nvdiffrast"]


@runtime_checkable
class Rasterizer(Protocol):
    name: str

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """pos_clip `[B, V, 4]`, tri `[F, 3]` int32 -> rast `[B, H, W, 4]` (nvdiffrast layout)."""
        ...

    def rasterize_world(self, positions: torch.Tensor, tri: torch.Tensor, mvp: torch.Tensor,
                        resolution: tuple[int, int]) -> torch.Tensor:
        """Same output for world positions `[V, 3]` seen through `mvp [B, 4, 4]` (lets a backend reuse its BVH)."""
        ...


def to_clip(positions: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
    """World positions `[V, 3]` and `mvp [B, 4, 4]` -> clip positions `[B, V, 4]`."""
    homogeneous = torch.cat([positions, positions.new_ones(positions.shape[0], 1)], dim=1)
    return torch.einsum("bij,vj->bvi", mvp.to(positions.dtype), homogeneous)


class ClipSpaceRasterizer:
    """Mixin: `rasterize_world` through `rasterize` for backends with no per-mesh state."""

    name = "base"

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError

    def rasterize_world(self, positions: torch.Tensor, tri: torch.Tensor, mvp: torch.Tensor,
                        resolution: tuple[int, int]) -> torch.Tensor:
        return self.rasterize(to_clip(positions.float(), mvp.float()), tri, resolution)


def check_inputs(pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> None:
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise ValueError(f"rasterize: pos_clip must be [B, V, 4], got {tuple(pos_clip.shape)}")
    if tri.dim() != 2 or tri.shape[-1] != 3:
        raise ValueError(f"rasterize: tri must be [F, 3], got {tuple(tri.shape)}")
    if len(resolution) != 2 or min(resolution) < 1:
        raise ValueError(f"rasterize: resolution must be (H, W) > 0, got {resolution}")


RasterizerFactory = Callable[[torch.device], Rasterizer]  # the device the rasterizer will run on

RASTERIZERS: ComponentRegistry[RasterizerFactory] = ComponentRegistry("rasterizer backend", param="backend")


__all__ = [
    "RASTERIZERS", "BackendName", "ClipSpaceRasterizer", "Rasterizer", "RasterizerFactory", "check_inputs", "to_clip",
]
