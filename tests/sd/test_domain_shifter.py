"""Domain shifters on a tiny random UNet: exactness, domain switching, training stages, inference schedule."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402

from graphflow import UserError  # noqa: E402
from nodes.sd.domain_shifter import (  # noqa: E402
    DomainShifter, apply_domain_shifting, domain_schedule, load_adapter, save_adapter,
)
from nodes.sd.training import (  # noqa: E402
    evaluation_loss, lora_parameters_by_block, real_sample_backward, train_control, train_domain_shifter,
)
from nodes.types import DomainAdapter, DomainSchedule  # noqa: E402

CROSS_DIM = 16


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)  # diffusers initialises from the global RNG; tests pin it
    return UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_DIM, attention_head_dim=8, norm_num_groups=8,
    ).eval()


def scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False)


def run_unet(unet: UNet2DConditionModel, x: torch.Tensor, t: int = 50) -> torch.Tensor:
    with torch.no_grad():
        context = torch.zeros(x.shape[0], 1, CROSS_DIM)
        return unet(x, torch.full((x.shape[0],), t), encoder_hidden_states=context).sample


def randomise_ups(shifter: DomainShifter, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for up in shifter.ups:
            up.weight.copy_(torch.randn(up.weight.shape, generator=gen))


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_zero_shifter_is_bit_identical_and_domain_switch_changes_output() -> None:
    unet = tiny_unet()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    base = run_unet(unet, x)
    shifter = DomainShifter.for_unet(unet, rank=2, embed_dim=8).attach(unet)
    assert shifter.num_blocks == 7
    for domain in ("real", "synthetic"):
        shifter.set_domain(domain)
        assert torch.equal(run_unet(unet, x), base)  # up = 0: exact zeros added
    randomise_ups(shifter)
    shifter.set_domain("real")
    real = run_unet(unet, x)
    shifter.set_domain("synthetic")
    synthetic = run_unet(unet, x)
    assert not torch.allclose(real, synthetic)
    # only through the embedding: equal embeddings give equal outputs
    with torch.no_grad():
        shifter.embeddings[1].copy_(shifter.embeddings[0])
    assert torch.equal(run_unet(unet, x), real)
    # per-sample domains equal the single-domain runs sample by sample
    with torch.no_grad():
        shifter.embeddings[1].normal_(generator=torch.Generator().manual_seed(3))
    shifter.set_domain("synthetic")
    synthetic = run_unet(unet, x)
    shifter.set_domain(torch.tensor([0, 1]))
    mixed = run_unet(unet, x)
    assert torch.allclose(mixed[0], real[0], atol=1e-5) and torch.allclose(mixed[1], synthetic[1], atol=1e-5)
    shifter.detach()
    assert torch.equal(run_unet(unet, x), base)


def test_stage1_lowers_loss_and_keeps_backbone_bit_identical() -> None:
    unet, sched = tiny_unet(), scheduler()
    gen = torch.Generator().manual_seed(0)
    # two distinct domains: smooth ramps ("synthetic") and noise ("real"), in [-1, 1]
    ramp = torch.linspace(-1, 1, 16)
    synthetic = (ramp.view(1, 1, 1, 16) * torch.rand(16, 3, 1, 1, generator=gen)).expand(16, 3, 16, 16).contiguous()
    real = torch.randn(16, 3, 16, 16, generator=gen).clamp(-1, 1) * 0.8
    context = torch.zeros(1, 1, CROSS_DIM)
    before_state = {k: v.clone() for k, v in unet.state_dict().items()}
    shifter = DomainShifter.for_unet(unet, rank=4, embed_dim=16, generator=gen).attach(unet)
    data = torch.cat([real, synthetic])
    ids = torch.cat([torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.long)])
    shifter.set_domain(ids)
    before = evaluation_loss(unet, sched, data, context)
    shifter, losses = train_domain_shifter(unet, sched, real, synthetic, context, steps=60, lr=2e-2, batch_size=8,
                                           generator=gen, shifter=shifter)
    shifter.set_domain(ids)
    after = evaluation_loss(unet, sched, data, context)
    assert after < before * 0.97, (before, after)
    for k, v in unet.state_dict().items():
        assert torch.equal(v, before_state[k]), k
    assert all(p.requires_grad for p in unet.parameters())  # flags restored
    assert any(bool(u.weight.abs().sum() > 0) for u in shifter.ups)


def test_stage2_freezes_shifter_and_early_blocks_for_real_samples() -> None:
    unet, sched = tiny_unet(), scheduler()
    gen = torch.Generator().manual_seed(0)
    shifter = DomainShifter.for_unet(unet, rank=2, embed_dim=8, generator=gen)
    randomise_ups(shifter)
    shifter.attach(unet)
    shifter_before = {k: v.clone() for k, v in shifter.state_dict().items()}
    backbone_before = {k: v.clone() for k, v in unet.state_dict().items()}
    synthetic = torch.randn(8, 3, 16, 16, generator=gen)
    geometry = torch.rand(8, 4, 16, 16, generator=gen)
    real = torch.randn(8, 3, 16, 16, generator=gen)
    context = torch.zeros(1, 1, CROSS_DIM)
    result = train_control(unet, sched, shifter, synthetic, geometry, real, context, rank=2, steps=3, lr=1e-2,
                           batch_size=2, reassign_prob=0.5, generator=gen)
    for k, v in shifter.state_dict().items():
        assert torch.equal(v, shifter_before[k]), k
    base_keys = {k.replace(".base_layer", "") for k in unet.state_dict() if "lora_" not in k}
    for k, v in unet.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, backbone_before[k.replace(".base_layer", "")]), k
    assert base_keys == set(backbone_before)
    assert len(result.synthetic_losses) == 3 and len(result.real_losses) == 3
    # one real-only pass with cutoff k: LoRA grads of blocks < k are zero, later ones are not
    pathway = result.pathway
    by_block = lora_parameters_by_block(pathway, shifter)
    for cutoff in (2, 5):
        for p in pathway.parameters():
            p.grad = None
        real_sample_backward(unet, sched, shifter, pathway, real[:2], context, cutoff=cutoff, reassign=True,
                             generator=gen)
        for i, params in enumerate(by_block):
            grads = [p.grad for p in params]
            if i < cutoff:
                assert all(g is None or not bool(g.any()) for g in grads), i
            else:
                assert any(g is not None and bool(g.any()) for g in grads), i
        assert all(p.grad is None or not bool(p.grad.any()) for p in pathway.encoder.parameters())
        assert not shifter._overrides  # reassignment is undone after the pass


def test_inference_schedule_switches_exactly_at_configured_blocks_and_timesteps() -> None:
    schedule = DomainSchedule(synthetic_blocks=(0, 2), t_min=0.6)
    assert domain_schedule(0, 0.6, schedule) == "synthetic"
    assert domain_schedule(0, 0.59, schedule) == "real"
    assert domain_schedule(1, 0.99, schedule) == "real"
    assert domain_schedule(2, 1.0, schedule) == "synthetic"
    unet = tiny_unet()
    shifter = DomainShifter.for_unet(unet, rank=2, embed_dim=8)
    randomise_ups(shifter)
    adapter = DomainAdapter(shifter=shifter.tensors(), meta=shifter.meta() | {"schedule": schedule.to_meta()})
    # record which domain each block actually used, per call
    seen: list[tuple[int, str]] = []
    attached = apply_domain_shifting(unet, adapter, 0.9)
    original = attached.block_bias

    def spy(index: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        spec = attached.block_domain(index)
        seen.append((index, spec if isinstance(spec, str) else str(spec.tolist())))
        return original(index, batch, device, dtype)

    attached.block_bias = spy  # type: ignore[method-assign]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for t, expected_synthetic in ((0.9, {0, 2}), (0.6, {0, 2}), (0.5, set()), (0.1, set())):
        seen.clear()
        assert apply_domain_shifting(unet, adapter, t) is attached  # attached once, reused
        run_unet(unet, x)
        assert [i for i, _ in seen] == list(range(7))
        assert {i for i, d in seen if d == "synthetic"} == expected_synthetic, t
        assert {i for i, d in seen if d == "real"} == set(range(7)) - expected_synthetic
    # per-sample t: sample 0 at high noise, sample 1 at low noise
    seen.clear()
    apply_domain_shifting(unet, adapter, torch.tensor([0.8, 0.3]))
    run_unet(unet, x)
    assert dict(seen)[0] == "[1, 0]" and dict(seen)[1] == "real"
    # synthetic domain: every block synthetic whatever t
    seen.clear()
    apply_domain_shifting(unet, adapter, 0.1, domain="synthetic")
    run_unet(unet, x)
    assert {d for _, d in seen} == {"synthetic"}
    # the shifter is not registered as a submodule: the UNet's parameters stay the backbone's
    assert not any("embeddings" in k or "ups." in k for k in unet.state_dict())
    # outputs: the schedule at low t equals plain real mode
    apply_domain_shifting(unet, adapter, 0.1)
    low = run_unet(unet, x)
    attached.clear_overrides()
    attached.set_domain("real")
    assert torch.equal(run_unet(unet, x), low)


def test_adapter_roundtrip_safetensors_and_codec(tmp_path) -> None:
    unet = tiny_unet()
    shifter = DomainShifter.for_unet(unet, rank=2, embed_dim=8)
    randomise_ups(shifter)
    adapter = DomainAdapter(shifter=shifter.tensors(), meta=shifter.meta() | {
        "schedule": DomainSchedule((0,), 0.7).to_meta()})
    loaded = load_adapter(save_adapter(adapter, tmp_path / "a.safetensors"))
    assert loaded.meta == adapter.meta and loaded.schedule == DomainSchedule((0,), 0.7)
    assert all(torch.equal(loaded.shifter[k], v) for k, v in adapter.shifter.items())
    tensors, meta = adapter.to_tensors()
    again = DomainAdapter.from_tensors(tensors, meta)
    assert again.meta == adapter.meta and all(torch.equal(again.shifter[k], v) for k, v in adapter.shifter.items())
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="bad.safetensors"):
        load_adapter(tmp_path / "bad.safetensors")
    other = UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16,),
        down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
        cross_attention_dim=CROSS_DIM, attention_head_dim=8, norm_num_groups=8, mid_block_type=None)
    with pytest.raises(UserError, match="different UNet"):
        DomainShifter.from_adapter(adapter).attach(other)
