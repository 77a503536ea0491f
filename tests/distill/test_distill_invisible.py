"""An instance no view shows (issue 14 item 1): with a start texture (texture.project's) the distillation nodes
return it unchanged, marked "projected only" on the texture and on the report (`ctx.note`), with one warning;
without a start (old graphs) it stays the UserError it was."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from graphflow import UserError
from graphflow.testing import make_context
from nodes.distill.nodes import DistillPixel, DistillSemantic
from nodes.types import TextureMap

from helpers.distill_scenes import flat_quads, procedural_references

NAMES = ("a", "b")
FAST = {"steps": 2, "texture_size": 32, "texture_levels": 3, "bank_size": 64, "views_per_step": 2}
NOTE = "not visible in any view: projected only"


@pytest.fixture(scope="module")
def hidden_a():
    scene, instances, views = flat_quads(NAMES, views_per_instance=2, resolution=32)
    a = views.instance_names.index("a")
    hidden = dataclasses.replace(views, instance_id=torch.where(views.instance_id == a, -1, views.instance_id))
    refs = procedural_references(NAMES, ("stripes", "checker"), size=48)
    init = TextureMap(image=torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)),
                      mask=torch.ones(32, 32, dtype=torch.bool), info={"texels_per_metre": 64.0, "stage": "project"})
    return scene, instances, refs, hidden, init


@pytest.mark.parametrize("node", [DistillSemantic, DistillPixel])
def test_hidden_instance_keeps_its_start_with_a_note_and_one_warning(hidden_a, node, caplog) -> None:
    scene, instances, refs, views, init = hidden_a
    ctx = make_context("semantic", item="a")
    with caplog.at_level(logging.WARNING):
        out = node(FAST).run(ctx, scene, instances["a"], refs["a"], views, init=init)
    assert torch.equal(out.image, init.image) and torch.equal(out.mask, init.mask)
    assert out.image.data_ptr() != init.image.data_ptr()  # a copy: the cached start is never aliased
    assert out.info["note"] == NOTE and out.info["texels_per_metre"] == 64.0 and "note" not in init.info
    assert ctx.notes == [NOTE]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "semantic" in warnings[0] and "'a'" in warnings[0]


def test_hidden_instance_without_a_start_is_still_a_user_error(hidden_a) -> None:
    scene, instances, refs, views, _ = hidden_a
    with pytest.raises(UserError, match="fewer than 16 pixels") as err:
        DistillSemantic(FAST).run(make_context("semantic", item="a"), scene, instances["a"], refs["a"], views)
    assert err.value.node == "semantic" and err.value.item == "a" and "views.sample" in (err.value.hint or "")


def test_visible_instance_is_distilled_not_projected(hidden_a) -> None:
    scene, instances, refs, views, init = hidden_a
    ctx = make_context("semantic", item="b")
    out = DistillSemantic(FAST).run(ctx, scene, instances["b"], refs["b"], views, init=init)
    assert "note" not in out.info and ctx.notes == []
