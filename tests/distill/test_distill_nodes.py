"""Distillation nodes and loops on synthetic flat quads (no rasterizer): gradients, NaN path, outputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from graphflow import Keyed, UserError
from graphflow.tasks import derive_seed
from graphflow.testing import make_context
from nodes.components.priors import PriorBatch
from nodes.distill.closed_form import ClosedFormPrior
from nodes.distill.loop import LoopSettings, distill_texture, with_one_restart
from nodes.distill.methods import distill_gradient, surrogate_loss
from nodes.measures.distances import binding_accuracy, patch_sliced_wasserstein
from nodes.distill.nodes import (BYPASS_NOTE, DistillParams, DistillPixel, DistillSemantic, SuperResAnchored,
                                 SuperResParams)
from nodes.distill.superres import ClosedFormSuperResPrior, SuperResSettings, anchored_superres
from nodes.distill.texture_param import PyramidTexture, select_instance_views
from nodes.types import TextureMap

from helpers.distill_scenes import flat_quads, procedural_reference, procedural_references

NAMES = ("a", "b")
FAST = {"steps": 6, "texture_size": 32, "texture_levels": 3, "bank_size": 256, "views_per_step": 2}


@pytest.fixture(scope="module")
def quads():
    scene, instances, views = flat_quads(NAMES, views_per_instance=3, resolution=32)
    refs = procedural_references(NAMES, ("stripes", "checker"), size=48)
    return scene, instances, refs, views


def test_pyramid_texture_reconstructs_its_init_and_gradients_reach_every_level() -> None:
    init = procedural_reference("checker", 32)
    tex = PyramidTexture(32, levels=3, init=init)
    torch.testing.assert_close(tex.image(), init, atol=1e-5, rtol=1e-5)
    _, _, views = flat_quads(["a"], 2, 24)
    iv = select_instance_views(views, "a")
    prior = ClosedFormPrior([init], bank_size=128, levels=2)
    x = prior.encode(tex.render(iv.uv, iv.mask))
    batch = PriorBatch("a", iv.mask)
    g = distill_gradient("vsd", prior, x, 0.5, batch, torch.Generator().manual_seed(0))
    surrogate_loss(x, g.grad, iv.mask.expand_as(x)).backward()
    for level in tex.levels:
        assert level.grad is not None and float(level.grad.abs().sum()) > 0


def test_semantic_node_outputs_a_texture_map(quads) -> None:
    scene, instances, refs, views = quads
    out = DistillSemantic(FAST).run(make_context("semantic", item="a"), scene, instances["a"], refs["a"], views,
                                    guidance_bank=refs)
    assert isinstance(out, TextureMap)
    assert out.image.shape == (3, 32, 32) and out.mask.shape == (32, 32) and out.mask.dtype == torch.bool
    assert bool(torch.isfinite(out.image).all()) and 0 <= float(out.image.min()) <= float(out.image.max()) <= 1
    assert out.info["restarted"] is False and out.info["steps"] == 6
    assert out.info["sw_to_reference"] > 0


def test_semantic_node_is_deterministic_for_a_seed(quads) -> None:
    scene, instances, refs, views = quads
    params = {**FAST, "method": "tbsd", "guidance_scale": 2.0, "init": "mean", "steps": 4}

    def run(seed: int) -> torch.Tensor:  # the `seed` param reaches the node as ctx.seed (graphflow/node.py)
        ctx = make_context("s", item="b", seed=derive_seed(seed, "b"))
        return DistillSemantic({**params, "seed": seed}).run(ctx, scene, instances["b"], refs["b"], views,
                                                             guidance_bank=refs).image

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.equal(first, run(1))


def test_pixel_and_superres_nodes_chain(quads) -> None:
    scene, instances, refs, views = quads
    sem = DistillSemantic({**FAST, "method": "sds"}).run(make_context("s", item="a"), scene, instances["a"],
                                                         refs["a"], views)
    pix = DistillPixel({**FAST, "steps": 3}).run(make_context("p", item="a"), scene, instances["a"], refs["a"],
                                                 views, sem)
    assert pix.image.shape == sem.image.shape
    sr = SuperResAnchored({"steps": 3, "crop": 16, "bank_size": 256}).run(make_context("sr", item="a"), pix, refs["a"])
    assert sr.image.shape == (3, 64, 64) and sr.mask.shape == (64, 64)
    for key in ("anchor_psnr", "anchor_l1", "detail_gain", "detail_gain_input"):
        assert key in sr.info
    assert sr.info["anchor_psnr"] > 15


def test_bypass_passes_the_start_through_without_running(quads) -> None:
    scene, instances, refs, views = quads
    start = TextureMap(image=torch.rand(3, 32, 32), mask=torch.ones(32, 32, dtype=torch.bool), info={"source": "x"})
    for node in (DistillSemantic({**FAST, "bypass": True}), DistillPixel({**FAST, "bypass": True})):
        ctx = make_context(node.name, item="a")
        out = node.run(ctx, scene, instances["a"], refs["a"], views, start)
        assert out.image is start.image and out.mask is start.mask  # unchanged, not re-rendered
        assert out.info["init"] == "bypassed" and out.info["source"] == "x" and ctx.notes == [BYPASS_NOTE]
    assert "bypass" not in DistillSemantic.unkeyed_params + DistillPixel.unkeyed_params  # part of the cache key
    with pytest.raises(UserError, match="bypass"):  # nothing to pass through
        DistillSemantic({**FAST, "bypass": True}).run(make_context("s", item="a"), scene, instances["a"], refs["a"],
                                                      views)


def test_nan_restarts_once_with_lower_lr_then_fails_naming_node_item_and_step(quads) -> None:
    scene, instances, refs, views = quads
    iv = select_instance_views(views, "a")
    prior = ClosedFormPrior(list(refs["a"].images), bank_size=128)
    settings = LoopSettings.from_params(DistillParams(), steps=5, lr=0.04, texture_size=32, texture_levels=3,
                                        views_per_step=2)
    mask = torch.ones(32, 32, dtype=torch.bool)
    _, info = distill_texture(prior, iv, mask, settings, 0, "a", "semantic", poison_steps=(2, None))
    assert info["restarted"] is True and info["restart_step"] == 2 and info["lr"] == pytest.approx(0.01)
    with pytest.raises(UserError) as err:
        distill_texture(prior, iv, mask, settings, 0, "a", "semantic", poison_steps=(2, 3))
    text = str(err.value)
    assert "semantic" in text and "'a'" in text and "step 3" in text


def test_superres_nan_restarts_once_then_fails_naming_node_and_step() -> None:
    """The super-resolution loop shares the restart rule (`with_one_restart`) with distillation."""
    image = procedural_reference("stripes", 32, seed=0)
    mask = torch.ones(32, 32, dtype=torch.bool)
    prior = ClosedFormSuperResPrior([procedural_reference("stripes", 64, seed=1)], 2, bank_size=128)
    settings = SuperResSettings.from_params(SuperResParams(), steps=4, crop=16, crops_per_step=2)
    poison = iter([1, None])

    def attempt(lr: float, index: int):
        return anchored_superres(prior, image, mask, settings, torch.Generator().manual_seed(0), lr=lr,
                                 poison_at=next(poison))

    info: dict = {}
    (out, out_mask, losses), lr = with_one_restart(attempt, 0.02, node_id="superres", item="sofa",
                                                   what="the texture", info=info, hint="lower params.lr")
    assert info["restarted"] is True and info["restart_step"] == 1 and lr == pytest.approx(0.005)
    assert out.shape == (3, 64, 64) and bool(torch.isfinite(out).all()) and len(losses) == 4
    with pytest.raises(UserError) as err:
        with_one_restart(lambda lr, index: anchored_superres(prior, image, mask, settings, torch.Generator(),
                                                             lr=lr, poison_at=2),
                         0.02, node_id="superres", item="sofa", what="the texture", info={}, hint="lower params.lr")
    text = str(err.value)
    assert "superres" in text and "sofa" in text and "step 2" in text and "lower params.lr" in text


def test_superres_mask_is_the_atlas_coverage_at_the_output_size(quads) -> None:
    """The ×2 atlas's mask is the one UV rasterization at the output size, not the input mask upsampled."""
    from nodes.distill.superres import output_coverage
    from nodes.render.uv_raster import uv_island_mask

    scene, instances, refs, _ = quads
    scene = dataclasses.replace(scene, uvs=scene.uvs * 0.5 + 0.0875)  # island borders between hi-res centres
    instance = instances["a"]
    low = uv_island_mask(scene.uvs, scene.faces[instance.face_mask], 16)
    high = output_coverage(low, 2, scene, instance)
    assert torch.equal(high, uv_island_mask(scene.uvs, scene.faces[instance.face_mask], 32))
    upsampled = output_coverage(low, 2, None, None)
    assert torch.equal(upsampled, low.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert not torch.equal(high, upsampled)  # the two rules disagree at the island borders
    texture = TextureMap(image=procedural_reference("stripes", 16, seed=0), mask=low)
    out = SuperResAnchored({"steps": 1, "factor": 2, "bank_size": 64, "crop": 16}).run(
        make_context("superres", item="a"), texture=texture, references=refs["a"], scene=scene, instances=instance)
    assert torch.equal(out.mask, high)


def test_bad_inputs_raise_user_errors(quads) -> None:
    scene, instances, refs, views = quads
    from nodes.types import Reference

    with pytest.raises(UserError, match="no images"):
        DistillSemantic(FAST).run(make_context("s", item="a"), scene, instances["a"], Reference(images=()), views)
    bad = Reference(images=(torch.full((3, 16, 16), float("nan")),))
    with pytest.raises(UserError, match="unusable"):
        DistillSemantic(FAST).run(make_context("s", item="a"), scene, instances["a"], bad, views)
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        DistillSemantic({"t_min": 0.9, "t_max": 0.5})
    # weights may come from the `weights` input port, so their absence is a run-time user error
    with pytest.raises(UserError, match="needs model weights") as info:
        DistillSemantic({**FAST, "prior": "stable_diffusion"}).run(make_context("s", item="a"), scene, instances["a"],
                                                                   refs["a"], views)
    assert info.value.param == "weights"
    with pytest.raises(ValidationError):
        DistillSemantic({"bogus": 1})


def test_superres_prior_follows_the_condition() -> None:
    from nodes.distill.superres import anchor_of

    refs = [procedural_reference("checker", 48), procedural_reference("dots", 48)]
    prior = ClosedFormSuperResPrior(refs, factor=2, bank_size=8192, cond_floor=0.05)
    batch = PriorBatch("a", torch.ones(1, 1, 32, 32))
    t = torch.tensor([0.9])  # almost pure noise: mostly the condition says what the patch is
    x_t = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for ref, other in ((refs[0], refs[1]), (refs[1], refs[0])):
        hi = ref[None, :, 8:40, 8:40]
        wrong = other[None, :, 8:40, 8:40]
        x0 = prior.decode(prior.predict_x0(x_t, t, anchor_of(hi[0], 2)[None], 0.0, batch))
        x0_wrong = prior.decode(prior.predict_x0(x_t, t, anchor_of(wrong[0], 2)[None], 0.0, batch))
        assert float((x0 - hi).abs().mean()) < 0.5 * float((x0_wrong - hi).abs().mean())


def test_metrics_sliced_wasserstein_and_binding() -> None:
    a, b = procedural_reference("stripes", 48), procedural_reference("dots", 48)
    renders = a[None]
    assert patch_sliced_wasserstein(renders, None, [a]) < 1e-6
    assert patch_sliced_wasserstein(renders, None, [b]) > 0.05
    d1 = patch_sliced_wasserstein(renders, torch.ones(1, 1, 48, 48), [b], seed=3)
    assert d1 == patch_sliced_wasserstein(renders, torch.ones(1, 1, 48, 48), [b], seed=3)
    assert binding_accuracy({"x": {"x": 0.1, "y": 0.2}, "y": {"x": 0.1, "y": 0.3}}) == 0.5
    assert isinstance(Keyed({"a": 1}), Keyed)
    # More pyramid levels than a small render has (a tiny instance in a batch run): the levels that
    # would be empty are skipped, the finer ones still count.
    small = a[None, :, :6, :6]
    assert patch_sliced_wasserstein(small, None, [b], levels=5) == patch_sliced_wasserstein(small, None, [b], levels=3)
    assert patch_sliced_wasserstein(small, None, [b], levels=5) > 0
