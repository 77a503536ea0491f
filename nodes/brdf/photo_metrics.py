"""Measures of a material fitted from photos against the maps that rendered them (issue 21 item 4).

All maps are `[C, H, W]` in the swatch's space. Each measure comes with the strongest simple alternative:
the photo used as albedo, the photos averaged, the luminance high-pass as height (`highpass_normals`,
what Materialize and most "normal from image" tools do), one roughness value for the whole swatch.
"""
from __future__ import annotations

import math

import kornia
import torch

from .metrics import pearson

LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
HIGHPASS_FRACTION = 1 / 16  # of the swatch's short side: the high-pass that isolates relief-scale detail


def _lum(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb * LUMA.to(rgb)[:, None, None]).sum(0, keepdim=True) if rgb.shape[0] == 3 else rgb


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(math.ceil(2.5 * sigma)) + 1
    k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1)
    return kornia.filters.gaussian_blur2d(x[None], (k, k), (sigma, sigma), border_type="reflect")[0]


def highpass(x: torch.Tensor, fraction: float = HIGHPASS_FRACTION) -> torch.Tensor:
    return x - _blur(x, max(1.0, fraction * min(x.shape[-2:])))


def shading_leak(albedo: torch.Tensor, truth: torch.Tensor, shading: torch.Tensor) -> float:
    """Correlation of high-passed log(albedo / truth) with high-passed log(shading that made the photo):
    how much of the photo's relief shading stayed in the albedo (0 = none; the photo itself ~0.75-1)."""
    ratio = torch.log(_lum(albedo).clamp_min(1e-4)) - torch.log(_lum(truth).clamp_min(1e-4))
    return pearson(highpass(ratio), highpass(torch.log(_lum(shading).clamp_min(1e-4))))


def rmse_after_gain(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """RMSE after the one exposure gain that fits `pred` to `truth` best (albedo's scale is free)."""
    p, t = pred.double().flatten(), truth.double().flatten()
    gain = (p @ t) / (p @ p).clamp_min(1e-12)
    return float(((gain * p - t) ** 2).mean().sqrt())


def rmse(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((pred.double() - truth.double()) ** 2).mean().sqrt())


def normal_xy_correlation(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean Pearson correlation of the x and the y components of tangent normals `[3, H, W]`."""
    return 0.5 * (pearson(pred[0], truth[0]) + pearson(pred[1], truth[1]))


def mean_normal_cosine(pred: torch.Tensor, truth: torch.Tensor) -> float:
    p = torch.nn.functional.normalize(pred.double(), dim=0)
    t = torch.nn.functional.normalize(truth.double(), dim=0)
    return float((p * t).sum(0).mean())


def roughness_scores(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Correlation and RMSE, beside the RMSE of the best single value (the truth's mean)."""
    return {"corr": pearson(pred, truth), "rmse": rmse(pred, truth),
            "rmse_best_single": rmse(torch.full_like(truth, float(truth.mean())), truth)}


def highpass_normals(photo: torch.Tensor, strength: float = 2.0,
                     sigmas: tuple[float, ...] = (2.0, 5.0, 12.0)) -> torch.Tensor:
    """The luminance high-pass heuristic (Materialize-like): height = the sum of the log luminance's
    band-passes at several scales (dark is low), normals from its Sobel gradient times `strength`."""
    log_lum = torch.log(_lum(photo).clamp_min(1e-4))
    height = sum((log_lum - _blur(log_lum, s)) for s in sigmas) / len(sigmas)
    g = kornia.filters.spatial_gradient(height[None], normalized=True)[0, 0]  # d/dcol, d/drow
    normal = torch.cat([-strength * g[0:1], strength * g[1:2], torch.ones_like(g[0:1])], 0)
    return normal / normal.norm(dim=0, keepdim=True)


def abo_protocol(albedo: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor | float,
                 normal: torch.Tensor, truth: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """ABO's material-estimation protocol: RMSE of albedo (after gain), roughness and metallic; the mean
    normal cosine."""
    metal_pred = torch.as_tensor(metallic, dtype=torch.float32).expand_as(roughness)
    metal_true = torch.as_tensor(truth["metallic"], dtype=torch.float32).expand_as(roughness)
    return {"albedo_rmse": rmse_after_gain(albedo, truth["albedo"]),
            "roughness_rmse": rmse(roughness, truth["roughness"]),
            "metallic_rmse": rmse(metal_pred, metal_true),
            "normal_cosine": mean_normal_cosine(normal, truth["normal"])}
