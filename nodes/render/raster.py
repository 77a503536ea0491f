"""Rasterizer backends by name: importing this module registers every built-in backend and "auto".

The contract (`Rasterizer`, `to_clip`, `check_inputs`) and the registry object live in
`nodes.components.raster`; each backend registers its own factory there when its module is imported.
"""
from __future__ import annotations

import torch

from graphflow import UserError
from nodes.components.raster import RASTERIZERS, BackendName, Rasterizer

from . import nvdiffrast_backend, torch_raster  # noqa: F401  (their backends register on import)
from .embree import embree_available


@RASTERIZERS.register("auto")
def auto_rasterizer(device: torch.device) -> Rasterizer:
    """nvdiffrast on CUDA when installed, else embree, else torch."""
    if device.type == "cuda":
        try:
            return RASTERIZERS.get("nvdiffrast")(device)
        except UserError:
            pass
    return RASTERIZERS.get("embree" if embree_available() else "torch")(device)


def get_rasterizer(name: BackendName = "auto", device: torch.device | str | None = None) -> Rasterizer:
    """The backend called `name` on `device` (CPU when None); an unknown name is a UserError listing the known."""
    return RASTERIZERS.get(name)(torch.device(device) if device is not None else torch.device("cpu"))


__all__ = ["get_rasterizer"]
