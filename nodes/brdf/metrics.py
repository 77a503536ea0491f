"""Quality measures of a decomposition against ground truth (DESIGN.md §8)."""
from __future__ import annotations

import torch


def scale_invariant_error(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Relative RMS error `|s·pred - truth| / |truth|` after the best global scale `s`.

    Albedo is only defined up to the light's intensity, so one scale per
    instance is free.
    """
    pred64, truth64 = pred.double().flatten(), truth.double().flatten()
    scale = (pred64 @ truth64) / (pred64 @ pred64).clamp_min(1e-12)
    return float((scale * pred64 - truth64).norm() / truth64.norm().clamp_min(1e-12))


def mean_absolute_error(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float((pred.double() - truth.double()).abs().mean())


def mean_angular_error_deg(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean angle in degrees between unit vectors `[N, 3]`."""
    pred_n = torch.nn.functional.normalize(pred.double(), dim=-1)
    truth_n = torch.nn.functional.normalize(truth.double(), dim=-1)
    cos = (pred_n * truth_n).sum(-1).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x64, y64 = x.double().flatten(), y.double().flatten()
    x64, y64 = x64 - x64.mean(), y64 - y64.mean()
    denom = (x64.norm() * y64.norm()).clamp_min(1e-12)
    return float((x64 @ y64) / denom)


def baked_shading_correlation(albedo_luminance: torch.Tensor, n_dot_l: torch.Tensor,
                              occlusion: torch.Tensor) -> dict[str, float]:
    """|Pearson correlation| of an albedo's luminance with n·l and with AO (0 = no baked shading)."""
    return {"n_dot_l": abs(pearson(albedo_luminance, n_dot_l)), "ao": abs(pearson(albedo_luminance, occlusion))}
