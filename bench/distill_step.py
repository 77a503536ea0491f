"""Share of a distillation step's time spent in the closed-form prior's math (CPU).

Runs `distill.semantic`'s loop (the shipped graph's params, VSD, from
`texture.project`'s world-scale start: bank of the swatch at the views'
scale, views reading the atlas's matching mip level) on one demo-room
instance and times, per step, the prior's calls (`predict_eps`,
`predict_eps_phi`, `update_phi`: patch extraction, distance matmuls, softmax,
folding) against the whole step (view sampling, texture pyramid, rendering
through the UVs, loss, backward, Adam). Last line: a JSON object with
`prior_share` (target >= 0.8), `step_ms` and `texels_per_second` (atlas
texels updated per second of distillation).

    python bench/distill_step.py [--instance sofa] [--steps 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from graphflow.testing import make_context
from nodes.distill.closed_form import ClosedFormPrior
from nodes.distill.loop import LoopSettings, run_steps
from nodes.distill.nodes import DistillSemantic
from nodes.distill.world_scale import render_level, swatch_at_view_scale
from nodes.texture.nodes import TextureProject
from nodes.components.priors import PriorBatch
from nodes.distill.texture_param import PyramidTexture, select_instance_views


class TimedPrior(ClosedFormPrior):
    """The closed-form prior, accumulating the wall time of its math."""

    prior_seconds = 0.0
    prior_cpu_seconds = 0.0

    def _timed(self, fn: Any, *args: Any) -> Any:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args)
        finally:
            self.prior_seconds += time.perf_counter() - start
            self.prior_cpu_seconds += time.process_time() - start_cpu

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: Any) -> torch.Tensor:
        return self._timed(super().predict_eps, x_t, t, batch, mode)

    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        return self._timed(super().predict_eps_phi, x_t, t, batch)

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        return self._timed(super().update_phi, x0, batch, generator)


def demo_inputs(instance: str) -> tuple[Any, Any, Any]:
    from nodes.render.nodes import SampleViews
    from nodes.scene.nodes import BindReferences, DemoRoomNode, SegmentParts

    room = DemoRoomNode({}).run(make_context("scene"))
    instances = SegmentParts({}).run(make_context("segment"), room.scene)
    refs = BindReferences({}).run(make_context("bind"), instances, references=room.references)
    views = SampleViews({}).run(make_context("views"), room.scene, instances)
    return refs[instance], views, instances, room.scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="sofa")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference, views, instances, scene = demo_inputs(args.instance)
    p = DistillSemantic.Params(init_t_max=0.4)  # the shipped graph's params
    start_texture = TextureProject({"texels_per_metre": 128}).run(make_context("project", item=args.instance), scene,
                                                                  instances[args.instance], reference)
    iv = select_instance_views(views, args.instance)
    size = int(start_texture.image.shape[-1])
    swatch = swatch_at_view_scale(reference, start_texture, iv)
    prior = TimedPrior([swatch], patch_size=p.patch_size, levels=p.pyramid_levels,
                       bank_size=p.bank_size, stride=p.stride, t_range=(p.t_min, p.init_t_max),
                       generator=torch.Generator().manual_seed(0))
    level = render_level(iv, size)
    settings = LoopSettings.from_params(p, steps=args.steps, t_max=p.init_t_max, texture_size=size,
                                        render_level=level)
    texture = PyramidTexture(size, p.texture_levels, init=start_texture.image, render_level=level)
    # Warm-up outside the timing: the first Adam imports torch._dynamo (seconds, once per process).
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    start, start_cpu = time.perf_counter(), time.process_time()
    run_steps(prior, texture, iv, settings, p.lr, torch.Generator().manual_seed(0), args.instance)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    share = prior.prior_seconds / total
    # CPU-time share too: on a shared, overloaded machine wall-clock shares are noisy.
    share_cpu = prior.prior_cpu_seconds / max(total_cpu, 1e-9)
    step_ms = 1000 * total / args.steps
    print(f"instance {args.instance}: {args.steps} steps of {p.method}, {p.views_per_step} views/step of "
          f"{tuple(iv.uv.shape[1:3])} px, bank {p.bank_size}, patch {p.patch_size}, stride {p.stride}, "
          f"{args.threads} threads")
    print(f"step {step_ms:.1f} ms, prior math {1000 * prior.prior_seconds / args.steps:.1f} ms ({share:.1%}), "
          f"rendering + bookkeeping {1000 * (total - prior.prior_seconds) / args.steps:.1f} ms; "
          f"CPU time: step {1000 * total_cpu / args.steps:.1f} ms, prior share {share_cpu:.1%}")
    texels_per_second = size * size * args.steps / total
    print(f"atlas {size}^2 at mip level {level}: {texels_per_second:,.0f} texels/s")
    print(json.dumps({"prior_share": round(share, 4), "step_ms": round(step_ms, 2),
                      "texels_per_second": round(texels_per_second), "atlas": size,
                      "prior_share_cpu": round(share_cpu, 4), "step_cpu_ms": round(1000 * total_cpu / args.steps, 2),
                      "steps": args.steps,
                      "instance": args.instance, "threads": args.threads}))


if __name__ == "__main__":
    main()
