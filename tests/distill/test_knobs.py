"""One source for each knob and each seed: the loops' settings come from the nodes' Params only, and a
seeded node draws from ctx.seed (the engine's derive_seed of its `seed` param) only."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from graphflow.testing import make_context
from graphflow.tasks import derive_seed
from nodes.distill.loop import LoopSettings
from nodes.distill.nodes import DistillParams, PixelParams, SuperResAnchored, SuperResParams
from nodes.distill.superres import SuperResSettings
from nodes.types import Reference, TextureMap

from helpers.distill_scenes import procedural_reference


@pytest.mark.parametrize(("settings_cls", "params"), [(LoopSettings, DistillParams()), (LoopSettings, PixelParams()),
                                                      (SuperResSettings, SuperResParams())])
def test_settings_defaults_are_the_params_defaults(settings_cls: type, params: object) -> None:
    settings = settings_cls.from_params(params)
    for f in dataclasses.fields(settings_cls):
        if f.name in type(params).model_fields:
            # a knob the Params has: no default of its own (it could drift), the Params' value
            assert f.default is dataclasses.MISSING, f"{settings_cls.__name__}.{f.name} has its own default"
            assert getattr(settings, f.name) == getattr(params, f.name)
        else:  # a loop internal: no Params field, so its one default is here
            assert f.default is not dataclasses.MISSING, f"{settings_cls.__name__}.{f.name} is in no Params"


def test_overrides_win_over_params() -> None:
    settings = LoopSettings.from_params(DistillParams(), t_max=0.4, render_level=2)
    assert settings.t_max == 0.4 and settings.render_level == 2 and settings.steps == DistillParams().steps


def _superres(seed: int) -> bytes:
    """superres.anchored on one item, with the ctx.seed the engine would give it (graphflow.scheduler)."""
    image = procedural_reference("stripes", 16, seed=0)
    texture = TextureMap(image=image, mask=torch.ones(16, 16, dtype=torch.bool))
    reference = Reference(images=(procedural_reference("stripes", 48, seed=1),), material="generic")
    node = SuperResAnchored({"steps": 3, "crop": 16, "crops_per_step": 2, "bank_size": 64, "seed": seed})
    ctx = make_context("superres", item="a", seed=derive_seed(seed, "a"))
    return node.run(ctx, texture, reference).image.numpy().tobytes()


def test_the_seed_param_changes_a_seeded_node_and_the_same_seed_gives_the_same_bytes() -> None:
    first = _superres(0)
    assert _superres(0) == first
    assert _superres(1) != first
