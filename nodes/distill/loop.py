"""The per-instance distillation loop shared by `distill.semantic` and `distill.pixel`.

Plain functions (no engine): the nodes build a prior and an `InstanceViews`
and call `distill_texture`. Numerics (issue 8): a NaN/inf in the loss or the
texture restarts the instance once with lr/4 (`info["restarted"] = True`); a
second occurrence raises `UserError` naming the node, the instance and the step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from graphflow import UserError
from nodes.components.priors import PriorBatch, ScorePrior

from .methods import MethodName, distill_gradient, mask_like, surrogate_loss
from .schedule import StepSettings, timestep
from .texture_param import InstanceViews, PyramidTexture, seen_texels


@dataclass(frozen=True, kw_only=True)
class LoopSettings(StepSettings):
    """The distillation loop's settings: `LoopSettings.from_params(DistillParams, ...)` (defaults live there)."""

    method: MethodName
    guidance_scale: float
    texture_size: int
    texture_levels: int
    views_per_step: int
    final_lr_fraction: float = 0.1  # the cosine lr decay's end (AveragedAdam)
    render_level: int = 0  # mip level the views read (see PyramidTexture)


class NonFiniteError(RuntimeError):
    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"non-finite {what} at step {step}")
        self.step, self.what = step, what


class AveragedAdam:
    """Adam on a texture's parameters, NaN/inf checks, and a Polyak (EMA) average of the parameters.

    Shared by the distillation loop and the super-resolution loop. The texture handed back by
    `finish` is the exponential moving average of the iterates, which removes most of the
    step-to-step noise of a stochastic distillation gradient. With `steps`, the learning rate
    decays along a cosine to `final_lr_fraction`: Adam moves every texel by ~lr per step whatever
    the gradient's size, so a constant lr would leave a random-walk noise floor in the texture.
    """

    def __init__(self, texture: torch.nn.Module, lr: float, ema_decay: float, steps: int | None = None,
                 final_lr_fraction: float = 1.0) -> None:
        self.parameters = list(texture.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr, betas=(0.9, 0.99))
        self.decay = None
        if steps is not None:
            self.decay = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: final_lr_fraction + (
                1 - final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
        self.ema_decay = ema_decay
        self.averaged = [p.detach().clone() for p in self.parameters]

    def step(self, step: int, loss: torch.Tensor) -> float:
        """Backward + one update; raises NonFiniteError naming the step. Returns the loss."""
        if not torch.isfinite(loss):
            raise NonFiniteError(step, "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.decay is not None:
            self.decay.step()
        if not all(bool(torch.isfinite(p).all()) for p in self.parameters):
            raise NonFiniteError(step, "texture")
        with torch.no_grad():
            for avg, param in zip(self.averaged, self.parameters, strict=True):
                avg.lerp_(param, 1.0 - self.ema_decay)
        return float(loss.detach())

    def finish(self) -> None:
        """Replace the parameters by their average."""
        with torch.no_grad():
            for avg, param in zip(self.averaged, self.parameters, strict=True):
                param.copy_(avg)


Attempt = TypeVar("Attempt")


def with_one_restart(attempt: Callable[[float, int], Attempt], lr: float, *, node_id: str, item: str | None,
                     what: str, info: dict[str, Any],
                     hint: str = "lower params.lr or params.guidance_scale") -> tuple[Attempt, float]:
    """`attempt(lr, index)`; on NaN/inf retry once with lr/4 (recorded in `info`), then a UserError.

    Returns the result and the learning rate that produced it.
    """
    for index in range(2):
        try:
            return attempt(lr, index), lr
        except NonFiniteError as err:
            if index == 1:
                raise UserError(
                    f"{what} became NaN/inf ({err.what}) at step {err.step} again after restarting with lr={lr:g}",
                    node=node_id, item=item, param="lr", hint=hint,
                ) from None
            info.update(restarted=True, restart_step=err.step, restart_reason=f"non-finite {err.what}")
            lr = lr / 4
    raise AssertionError("unreachable")


def run_steps(
    prior: ScorePrior,
    texture: PyramidTexture,
    views: InstanceViews,
    settings: LoopSettings,
    lr: float,
    generator: torch.Generator,
    instance: str,
    on_step: Callable[[int, float], None] | None = None,
    poison_at: int | None = None,
) -> list[float]:
    """Optimise `texture` in place; returns the loss per step. Raises NonFiniteError."""
    optimizer = AveragedAdam(texture, lr, settings.ema_decay, settings.steps, settings.final_lr_fraction)
    taps = texture.taps(views.uv, views.mask)  # the views are fixed: their texel lookups are too
    count = views.uv.shape[0]
    per_step = min(settings.views_per_step, count)
    losses: list[float] = []
    for step in range(settings.steps):
        t = timestep(settings.schedule, step, settings.steps, settings.t_min, settings.t_max, generator)
        chosen = torch.randperm(count, generator=generator)[:per_step] if per_step < count else torch.arange(count)
        mask = views.mask[chosen]
        x = prior.encode(texture.render_taps(taps[chosen]))
        batch = PriorBatch(instance=instance, masks=mask)
        result = distill_gradient(settings.method, prior, x, t, batch, generator,
                                  guidance_scale=settings.guidance_scale, t_min=settings.t_min)
        grad = result.grad
        if poison_at is not None and step == poison_at:  # test hook for the NaN path
            grad = grad * float("nan")
        losses.append(optimizer.step(step, surrogate_loss(x, grad, mask_like(mask, x))))
        if on_step is not None:
            on_step(step, losses[-1])
    optimizer.finish()
    return losses


def distill_texture(
    prior: ScorePrior,
    views: InstanceViews,
    atlas_mask: torch.Tensor,
    settings: LoopSettings,
    generator_seed: int,
    instance: str,
    node_id: str,
    init: torch.Tensor | None = None,
    fill: torch.Tensor | float = 0.5,
    progress: Any = None,
    poison_steps: tuple[int | None, int | None] = (None, None),
    info: dict[str, Any] | None = None,
) -> tuple[PyramidTexture, dict[str, Any]]:
    """Run the loop (restarting once with lr/4 on NaN/inf); returns the texture and its info."""
    info = dict(info or {})

    def attempt(lr: float, index: int) -> tuple[PyramidTexture, list[float]]:
        if index and progress is not None:
            progress.n = 0
        generator = torch.Generator().manual_seed(generator_seed)
        texture = PyramidTexture(settings.texture_size, settings.texture_levels, init=init, fill=fill,
                                 render_level=settings.render_level)

        def on_step(step: int, loss: float) -> None:
            if progress is not None:
                progress.update(1, loss=f"{loss:.4g}")

        losses = run_steps(prior, texture, views, settings, lr, generator, instance, on_step,
                           poison_at=poison_steps[index])
        return texture, losses

    (texture, losses), lr = with_one_restart(attempt, settings.lr, node_id=node_id, item=instance,
                                             what=f"the texture of instance '{instance}'", info=info)
    info.setdefault("restarted", False)
    info.update(steps=settings.steps, lr=lr, method=settings.method, schedule=settings.schedule,
                final_loss=losses[-1] if losses else None,
                loss_first=losses[0] if losses else None)
    info["seen_fraction"] = float(seen_texels(views.uv, views.mask, settings.texture_size).float().mean())
    return texture, info
