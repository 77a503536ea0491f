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

from dataclasses import dataclass, fields
from typing import Any, Literal, Self

import torch

ScheduleName = Literal["decreasing", "anneal", "random"]


@dataclass(frozen=True, kw_only=True)
class StepSettings:
    """What every distillation-like loop reads. The knobs a user sets have no defaults here: they
    live in the node's pydantic Params (what docs and graph YAML show) and reach a run through
    `from_params`, so there is one value for each. Only loop internals that no Params has
    (`ema_decay`, ...) carry defaults."""

    steps: int
    lr: float
    t_min: float
    t_max: float
    schedule: ScheduleName
    ema_decay: float = 0.9  # Polyak average of the iterates (AveragedAdam)

    @classmethod
    def from_params(cls, params: Any, **overrides: Any) -> Self:
        """The settings a node's Params give: each field from the Params field of that name, unless
        `overrides` sets it (what a run decides itself: an atlas size, a noise ceiling, a mip level)."""
        taken = {f.name: getattr(params, f.name) for f in fields(cls)
                 if f.init and f.name not in overrides and hasattr(params, f.name)}
        return cls(**taken, **overrides)


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
