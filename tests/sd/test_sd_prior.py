"""The Stable Diffusion score prior on a tiny random pipeline (nothing downloaded)."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never download; loading must work without the network

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphflow import UserError
from nodes.components.priors import PriorBatch
from nodes.distill.methods import distill_gradient, surrogate_loss
from nodes.sd.loading import clear_cache, load_sd_components, resolve_weights
from nodes.sd.prior import StableDiffusionPrior, load_sd_prior
from nodes.sd.tiny import build_tiny_sd
from nodes.types import Reference

pytest.importorskip("diffusers", reason="the optional `sd` extra (diffusers, transformers, peft) is not installed")
pytest.importorskip("peft", reason="the optional `sd` extra is not installed")

FIRST_CROSS_ATTENTION = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models are latency-bound; extra intra-op threads only contend on a shared 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"), seed=0)


def _references(seed: int = 0) -> dict[str, Reference]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "sofa": Reference(images=(torch.rand(3, 40, 40, generator=generator),), material="fabric"),
        "table": Reference(
            images=(torch.rand(3, 40, 48, generator=generator), torch.rand(3, 24, 24, generator=generator)),
            material="wood", prompt="oak planks",
        ),
    }


@pytest.fixture(scope="module")
def prior(tiny_sd: Path) -> StableDiffusionPrior:
    return load_sd_prior(str(tiny_sd), _references(), "cpu", seed=0)


def _half_masks(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    left = torch.zeros(1, 1, size, size)
    left[..., : size // 2] = 1.0
    return left, 1.0 - left


def test_shapes_and_noise_schedule(prior: StableDiffusionPrior) -> None:
    latents = prior.encode(torch.rand(2, 3, 48, 48))
    assert latents.shape == (2, 4, 16, 16)  # resized to the UNet's sample size x VAE factor (16 x 2)
    assert prior.encode(torch.rand(1, 3, 24, 48)).shape == (1, 4, 8, 16)  # aspect kept, sides multiples of 4
    t = torch.tensor([0.02, 0.5, 0.98])
    a, s = prior.noise_coeffs(t)
    assert a.shape == s.shape == (3, 1, 1, 1)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a))
    assert bool((a.flatten()[1:] < a.flatten()[:-1]).all())
    masks = torch.ones(2, 1, 48, 48)
    x_t = a[1] * latents + s[1] * torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    batch = PriorBatch(instance="sofa", masks=masks)
    cond = prior.predict_eps(x_t, t[1:2].expand(2), batch, "cond")
    uncond = prior.predict_eps(x_t, t[1:2].expand(2), batch, "uncond")
    assert cond.shape == uncond.shape == latents.shape
    assert not cond.requires_grad and bool(torch.isfinite(cond).all())
    assert float((cond - uncond).abs().max()) > 0  # text + reference images condition the score
    # At init the LoRA's B is zero, so ε_φ equals the conditional score exactly.
    torch.testing.assert_close(prior.predict_eps_phi(x_t, t[1:2].expand(2), batch), cond, rtol=0, atol=0)


def test_sds_gradient_reaches_texture(prior: StableDiffusionPrior) -> None:
    generator = torch.Generator().manual_seed(1)
    texture = torch.rand(1, 3, 16, 16, generator=generator).requires_grad_(True)
    # A render: the texture sampled through a smooth UV field, as `views` fragments would give.
    ys, xs = torch.meshgrid(torch.linspace(-0.9, 0.9, 48), torch.linspace(-0.8, 0.8, 48), indexing="ij")
    grid = torch.stack([xs + 0.1 * torch.sin(3 * ys), ys], dim=-1)[None]
    render = F.grid_sample(texture, grid, mode="bilinear", align_corners=False)
    mask = torch.ones(1, 1, 48, 48)
    x = prior.encode(render)
    batch = PriorBatch(instance="table", masks=mask)
    step = distill_gradient("sds", prior, x, 0.6, batch, generator, guidance_scale=7.5)
    loss = surrogate_loss(x, step.grad, torch.ones_like(x))
    loss.backward()
    assert texture.grad is not None
    assert bool(torch.isfinite(texture.grad).all()) and float(texture.grad.abs().sum()) > 0


def test_vsd_lora_trains(tiny_sd: Path) -> None:
    prior = load_sd_prior(str(tiny_sd), _references(), "cpu", seed=3)
    x0 = prior.encode(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))).detach()
    batch = PriorBatch(instance="sofa", masks=torch.ones(2, 1, 32, 32))
    before = prior.lora_state()
    assert before and all(".lora_" in name for name in before)
    losses = [prior.update_phi(x0, batch, torch.Generator().manual_seed(k)) for k in range(2)]
    assert all(isinstance(loss, float) and loss > 0 for loss in losses)
    after = prior.lora_state()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before)  # every LoRA matrix moved (B from zero, A once B is non-zero)
    t = torch.full((2,), 0.5)
    x_t = 0.7 * x0 + 0.7 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    phi = prior.predict_eps_phi(x_t, t, batch)
    assert float((phi - prior.predict_eps(x_t, t, batch, "cond")).abs().max()) > 0
    # The frozen UNet is untouched: the prior's own score ignores the LoRA.
    reference = load_sd_prior(str(tiny_sd), _references(), "cpu", seed=3)
    torch.testing.assert_close(reference.predict_eps(x_t, t, batch, "cond"), prior.predict_eps(x_t, t, batch, "cond"))
    # The VSD step through the shared method calls update_phi and gives a finite gradient.
    step = distill_gradient("vsd", reference, x0, 0.5, batch, torch.Generator().manual_seed(5), guidance_scale=7.5)
    assert bool(torch.isfinite(step.grad).all())


def test_same_seed_same_bytes(tiny_sd: Path) -> None:
    x0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = PriorBatch(instance="table", masks=torch.ones(1, 1, 32, 32))
    outputs = []
    for _ in range(2):
        prior = load_sd_prior(str(tiny_sd), _references(), "cpu", seed=7)
        loss = prior.update_phi(x0, batch, torch.Generator().manual_seed(9))
        outputs.append((loss, prior.predict_eps_phi(x0, torch.tensor([0.3]), batch)))
    assert outputs[0][0] == outputs[1][0]
    assert torch.equal(outputs[0][1], outputs[1][1])


def _first_cross_attention_output(prior: StableDiffusionPrior, x_t: torch.Tensor, t: torch.Tensor,
                                  masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    captured: list[torch.Tensor] = []
    layer = prior.unet.get_submodule(FIRST_CROSS_ATTENTION)
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output.detach().clone()))
    try:
        eps = prior.predict_eps_regions(x_t, t, masks, "cond")
    finally:
        handle.remove()
    return captured[0], eps


def test_ip_adapter_masks_route_each_instance_to_its_pixels(tiny_sd: Path) -> None:
    """Perturb the sofa's reference: the sofa's pixels change, the table's do not (masked IP attention)."""
    from diffusers.image_processor import IPAdapterMaskProcessor

    references = _references()
    perturbed = dict(references)
    perturbed["sofa"] = Reference(images=(torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(11)),),
                                  material="fabric")
    prior_a = load_sd_prior(str(tiny_sd), references, "cpu")
    prior_b = load_sd_prior(str(tiny_sd), perturbed, "cpu")
    assert float((prior_a.image_embeds["sofa"] - prior_b.image_embeds["sofa"]).abs().max()) > 1e-3
    torch.testing.assert_close(prior_a.image_embeds["table"], prior_b.image_embeds["table"])

    sofa_mask, table_mask = _half_masks(32)  # sofa on the left half of the image, table on the right
    masks = {"sofa": sofa_mask, "table": table_mask}
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(12))
    t = torch.tensor([0.5])
    attn_a, eps_a = _first_cross_attention_output(prior_a, x_t, t, masks)
    attn_b, eps_b = _first_cross_attention_output(prior_b, x_t, t, masks)

    # Layer level, exact: the first cross-attention sees identical inputs, so its output may differ only where
    # the sofa mask, downsampled by diffusers (bicubic) to this layer's 16x16 tokens, is non-zero.
    change = (attn_a - attn_b).abs().amax(dim=-1).view(16, 16)
    routed = IPAdapterMaskProcessor.downsample(sofa_mask[:, 0], 1, 256, 1).view(16, 16)
    assert float(change[routed == 0].abs().max()) == 0.0
    assert int((routed == 0).sum()) >= 6 * 16  # most of the table's 8 columns (bicubic rings ~1 token)
    assert float(change[:, :8].mean()) > 0

    # UNet output level: convolutions and global self-attention downstream spread the change, so the
    # outside is not unchanged; the inside still changes more (inside/outside mean |Δε| measured 1.5-1.75
    # over 5 seeds: this tiny UNet's receptive field covers the whole 16x16 latent).
    delta = (eps_a - eps_b).abs().mean(dim=(0, 1))
    inside, outside = float(delta[:, :8].mean()), float(delta[:, 8:].mean())
    assert inside > outside > 0


def test_uncond_ignores_references(tiny_sd: Path) -> None:
    other = _references(seed=5)
    prior_a = load_sd_prior(str(tiny_sd), _references(), "cpu")
    prior_b = load_sd_prior(str(tiny_sd), other, "cpu")
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    batch = PriorBatch(instance="sofa", masks=_half_masks(32)[0])
    t = torch.tensor([0.4])
    torch.testing.assert_close(prior_a.predict_eps(x_t, t, batch, "uncond"),
                               prior_b.predict_eps(x_t, t, batch, "uncond"))
    guided = load_sd_prior(str(tiny_sd), _references(), "cpu", guidance_scale=3.0)
    cond, uncond = prior_a.predict_eps(x_t, t, batch, "cond"), prior_a.predict_eps(x_t, t, batch, "uncond")
    torch.testing.assert_close(guided.predict_eps(x_t, t, batch, "cond"), uncond + 3.0 * (cond - uncond))


def test_unknown_instance_is_a_user_error(prior: StableDiffusionPrior, tiny_sd: Path) -> None:
    batch = PriorBatch(instance="lamp", masks=torch.ones(1, 1, 32, 32))
    with pytest.raises(UserError, match="lamp"):
        prior.predict_eps(torch.zeros(1, 4, 16, 16), torch.tensor([0.5]), batch, "cond")
    # A prior built for one reference (one distillation item) serves it whatever the item is called.
    single = load_sd_prior(str(tiny_sd), {"sofa": _references()["sofa"]}, "cpu")
    eps = single.predict_eps(torch.zeros(1, 4, 16, 16), torch.tensor([0.5]), batch, "cond")
    sofa = single.predict_eps(torch.zeros(1, 4, 16, 16), torch.tensor([0.5]),
                              PriorBatch(instance="sofa", masks=batch.masks), "cond")
    assert torch.equal(eps, sofa)


def test_missing_weights_name_the_path(tmp_path: Path, tiny_sd: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(UserError) as error:
        load_sd_prior(str(missing), _references(), "cpu")
    message = str(error.value)
    assert str(missing) in message and "weights" in message and "huggingface-cli download" in message
    with pytest.raises(UserError, match="nobody/not-a-cached-model"):
        load_sd_prior("nobody/not-a-cached-model", _references(), "cpu")
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    with pytest.raises(UserError, match="vae"):
        resolve_weights(str(partial))
    # A pipeline without an IP-Adapter: a clear error by default, a text-only prior on request.
    no_ip = tmp_path / "no_ip"
    no_ip.mkdir()
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (no_ip / sub).symlink_to(tiny_sd / sub)
    with pytest.raises(UserError, match="IP-Adapter"):
        load_sd_components(str(no_ip))
    text_only = load_sd_prior(str(no_ip), _references(), "cpu", use_ip_adapter=False)
    assert not text_only.uses_ip_adapter
    eps = text_only.predict_eps(torch.zeros(1, 4, 16, 16), torch.tensor([0.5]),
                                PriorBatch(instance="sofa", masks=torch.ones(1, 1, 32, 32)), "cond")
    assert eps.shape == (1, 4, 16, 16)


def test_hub_id_resolves_from_local_cache_only(tmp_path: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id already in the HF cache loads offline; the same id absent raises, never downloads."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    repo = cache / "models--graphflow--tiny-sd"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / commit).symlink_to(tiny_sd, target_is_directory=True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    clear_cache()
    prior = load_sd_prior("graphflow/tiny-sd", _references(), "cpu")
    assert prior.encode(torch.rand(1, 3, 32, 32)).shape == (1, 4, 16, 16)
    with pytest.raises(UserError, match="graphflow/other-model"):
        load_sd_prior("graphflow/other-model", _references(), "cpu")


def test_tiny_pipeline_is_deterministic(tmp_path: Path, tiny_sd: Path) -> None:
    again = build_tiny_sd(tmp_path / "again", seed=0)
    for file in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "ip_adapter/ip-adapter.safetensors", "tokenizer/vocab.json"):
        assert (again / file).read_bytes() == (tiny_sd / file).read_bytes(), file


def test_depth_controlnet(tiny_sd: Path, tmp_path: Path) -> None:
    from nodes.sd.prior import depth_control_image

    prior = load_sd_prior(str(tiny_sd), _references(), "cpu")  # controlnet="auto": tiny_sd has controlnet/
    assert prior.controlnet is not None
    depth = torch.zeros(2, 1, 48, 48)
    depth[..., 8:40, 8:40] = torch.linspace(1.0, 3.0, 32).view(1, 1, 1, 32)
    mask = (depth > 0).float()
    x_t = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.5)
    plain = prior.predict_eps(x_t, t, PriorBatch("sofa", mask), "cond")
    near = prior.predict_eps(x_t, t, PriorBatch("sofa", mask, depth=depth), "cond")
    far = prior.predict_eps(x_t, t, PriorBatch("sofa", mask, depth=depth * 2 + 1), "cond")
    assert float((near - plain).abs().max()) > 0 and float((far - near).abs().max()) > 0
    image = depth_control_image(depth, (32, 32), 2)
    assert image.shape == (2, 3, 32, 32) and float(image[..., 0, 0].max()) == 0.0  # background black
    assert float(image[0, 0, 16, 6]) > float(image[0, 0, 16, 25])  # nearer is brighter
    off = load_sd_prior(str(tiny_sd), _references(), "cpu", controlnet=None)
    assert off.controlnet is None
    torch.testing.assert_close(off.predict_eps(x_t, t, PriorBatch("sofa", mask, depth=depth), "cond"), plain)
    with pytest.raises(UserError, match="controlnet"):
        load_sd_prior(str(tiny_sd), _references(), "cpu", controlnet=str(tmp_path / "no_controlnet"))


def test_shared_unet_left_plain(tiny_sd: Path) -> None:
    """The cached UNet is shared (other priors, E2's domain shifter): φ's LoRA is off between calls."""
    prior = load_sd_prior(str(tiny_sd), _references(), "cpu", seed=1, rows_bottom_up=False)
    x0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = PriorBatch(instance="sofa", masks=torch.ones(1, 1, 32, 32))
    prior.update_phi(x0, batch, torch.Generator().manual_seed(0))
    phi = prior.predict_eps_phi(x0, torch.tensor([0.5]), batch)
    text = prior.text_embeds["sofa"][None]
    added = {"image_embeds": [prior.image_embeds["sofa"][None, None]]}
    masks = {"ip_adapter_masks": [torch.ones(1, 1, 32, 32)]}
    direct = prior.unet(x0, torch.tensor([500]), encoder_hidden_states=text, added_cond_kwargs=added,
                        cross_attention_kwargs=masks).sample
    torch.testing.assert_close(direct, prior.predict_eps(x0, torch.tensor([0.5]), batch, "cond"))
    assert float((direct - phi).abs().max()) > 0


def test_bottom_up_rows_are_flipped_to_upright(tiny_sd: Path) -> None:
    """Views rows are bottom-up (nvdiffrast); SD sees upright images; callers get their own row order back."""
    bottom_up = load_sd_prior(str(tiny_sd), _references(), "cpu")
    top_down = load_sd_prior(str(tiny_sd), _references(), "cpu", rows_bottom_up=False)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bottom_up.encode(image), top_down.encode(image.flip(-2)).flip(-2))
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :10, :] = 1.0  # the bottom rows of the view
    depth = 1.0 + torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.4])
    eps = bottom_up.predict_eps(x_t, t, PriorBatch("sofa", mask, depth=depth), "cond")
    upright = top_down.predict_eps(x_t.flip(-2), t, PriorBatch("sofa", mask.flip(-2), depth=depth.flip(-2)), "cond")
    torch.testing.assert_close(eps, upright.flip(-2))
    assert bottom_up.decode(bottom_up.encode(image)).shape == (1, 3, 32, 32)


def test_domain_shifting_hook(tiny_sd: Path) -> None:
    """E2's Realiz3D domain shifter plugs into the prior; a prior without one leaves the shared UNet plain."""
    from nodes.sd.domain_shifter import DomainShifter
    from nodes.types import DomainAdapter

    plain = load_sd_prior(str(tiny_sd), _references(), "cpu")
    shifter = DomainShifter.for_unet(plain.unet, generator=torch.Generator().manual_seed(0))
    zero_up = DomainAdapter(shifter=shifter.tensors(), meta=shifter.meta())
    trained = dict(shifter.tensors())
    for name in trained:
        if name.startswith("ups."):
            trained[name] = torch.randn(trained[name].shape, generator=torch.Generator().manual_seed(1))
    adapter = DomainAdapter(shifter=trained, meta=shifter.meta())
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    t, batch = torch.tensor([0.7]), PriorBatch("sofa", torch.ones(1, 1, 32, 32))
    base = plain.predict_eps(x_t, t, batch, "cond")
    same = load_sd_prior(str(tiny_sd), _references(), "cpu", domain_adapter=zero_up)
    torch.testing.assert_close(same.predict_eps(x_t, t, batch, "cond"), base)  # up = 0: bit-identical backbone
    synthetic = load_sd_prior(str(tiny_sd), _references(), "cpu", domain_adapter=adapter, domain="synthetic")
    assert float((synthetic.predict_eps(x_t, t, batch, "cond") - base).abs().max()) > 0
    torch.testing.assert_close(plain.predict_eps(x_t, t, batch, "cond"), base)  # shifter removed again
    with pytest.raises(UserError, match="domain"):
        load_sd_prior(str(tiny_sd), _references(), "cpu", domain="synthetic")
