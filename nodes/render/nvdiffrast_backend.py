"""The `nvdiffrast` backend (CUDA): a thin adapter with the same signature as the others.

nvdiffrast is NVIDIA's; its licence allows non-commercial use only. It needs a
CUDA GPU and is installed from source (`pip install git+https://github.com/NVlabs/nvdiffrast`).
"""
from __future__ import annotations

import torch

from graphflow import UserError
from nodes.components.raster import RASTERIZERS, ClipSpaceRasterizer, check_inputs


class NvdiffrastRasterizer(ClipSpaceRasterizer):
    name = "nvdiffrast"

    def __init__(self, device: torch.device | str = "cuda") -> None:
        device = torch.device(device)
        try:
            import nvdiffrast.torch as dr
        except ImportError as error:
            raise UserError("rasterizer backend 'nvdiffrast' is not installed", param="backend",
                            hint="it needs CUDA and `pip install git+https://github.com/NVlabs/nvdiffrast` "
                                 "(non-commercial licence); or use backend: embree") from error
        if device.type != "cuda" or not torch.cuda.is_available():
            raise UserError("rasterizer backend 'nvdiffrast' needs a CUDA device", param="backend",
                            hint="run with --device cuda on a GPU machine, or use backend: embree")
        self._dr = dr
        self._device = device
        self._context = dr.RasterizeCudaContext(device=device)

    def rasterize(self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        check_inputs(pos_clip, tri, resolution)
        rast, _ = self._dr.rasterize(self._context, pos_clip.float().contiguous().to(self._device),
                                     tri.to(device=self._device, dtype=torch.int32).contiguous(), resolution)
        return rast


@RASTERIZERS.register("nvdiffrast")
def nvdiffrast_rasterizer(device: torch.device) -> NvdiffrastRasterizer:
    return NvdiffrastRasterizer(device)


__all__ = ["NvdiffrastRasterizer", "nvdiffrast_rasterizer"]
