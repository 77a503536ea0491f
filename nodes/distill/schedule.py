"""Timestep schedules for score distillation.

`t` is continuous in (0, 1) (`nodes.components.priors`' convention). τ = step / (steps - 1) is
the progress of the run.

- `decreasing`: `t = t_min + (t_max - t_min) (1 - τ)²` (DreamTime-like
  monotone decrease: structure at high noise first, detail last); `linear`
  shape gives `t_min + (t_max - t_min)(1 - τ)`.
- `anneal`: uniform in [t_min, t_max] for the first `anneal_fraction` of the
  steps, then uniform in [t_min, min(t_max, anneal_to)] (ProlificDreamer's
  0.98 -> 0.5 annealing).
- `random`: uniform in [t_min, t_max] throughout (plain SDS; mean-seeking).
"""
from __future__ import annotations

from typing import Literal

import torch

ScheduleName = Literal["decreasing", "anneal", "random"]


def timestep(
    schedule: ScheduleName,
    step: int,
    steps: int,
    t_min: float,
    t_max: float,
    generator: torch.Generator,
    *,
    shape: Literal["quadratic", "linear"] = "quadratic",
    anneal_fraction: float = 0.5,
    anneal_to: float = 0.5,
) -> float:
    """The noise level of `step` (0-based) out of `steps`."""
    if not 0.0 < t_min <= t_max < 1.0:
        raise ValueError(f"need 0 < t_min <= t_max < 1, got t_min={t_min}, t_max={t_max}")
    tau = step / max(steps - 1, 1)
    if schedule == "decreasing":
        ramp = (1.0 - tau) ** 2 if shape == "quadratic" else 1.0 - tau
        return t_min + (t_max - t_min) * ramp
    if schedule == "anneal":
        high = t_max if tau < anneal_fraction else max(t_min, min(t_max, anneal_to))
        return t_min + (high - t_min) * float(torch.rand((), generator=generator))
    if schedule == "random":
        return t_min + (t_max - t_min) * float(torch.rand((), generator=generator))
    raise ValueError(f"unknown schedule '{schedule}'")
