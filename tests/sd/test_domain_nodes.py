"""train.domain_shifter / train.control as nodes on D's tiny random SD pipeline (CPU, no downloads)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from graphflow import Keyed, UserError  # noqa: E402
from graphflow.testing import make_context  # noqa: E402
from nodes.sd.domain_shifter import DomainShifter, apply_domain_shifting, remove_domain_shifting  # noqa: E402
from nodes.sd.nodes import TrainControl, TrainDomainShifter  # noqa: E402
from nodes.sd.training import geometry_from_views, load_control  # noqa: E402
from nodes.types import DomainAdapter, Reference, TextureMap, Views  # noqa: E402


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nodes.sd.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def flat_views(batch: int = 2, size: int = 32) -> Views:
    """Cameras looking straight at one textured quad: uv spans the image, constant normal, ramped depth."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    uv = torch.stack([xs, 1 - ys], -1).expand(batch, size, size, 2).contiguous()  # rows bottom-first
    covered = torch.ones(batch, size, size, dtype=torch.bool)
    covered[:, :, :4] = False
    depth = (1.0 + xs).expand(batch, size, size) * covered
    rast = torch.zeros(batch, size, size, 4)
    rast[..., 3] = covered.float()
    normal = torch.zeros(batch, size, size, 3)
    normal[..., 2] = 1.0
    eye = torch.eye(4).expand(batch, 4, 4).contiguous()
    return Views(
        rast=rast, uv=uv * covered[..., None], normal=normal * covered[..., None],
        position=torch.zeros(batch, size, size, 3),
        depth=depth, instance_id=torch.where(covered, 0, -1), mvp=eye, world_to_cam=eye,
        intrinsics=torch.eye(3).expand(batch, 3, 3).contiguous(), instance_names=("table",), view_target=("table", ""),
    )


def smooth_texture() -> Keyed[TextureMap]:
    ramp = torch.linspace(0, 1, 16)
    image = torch.stack([ramp.view(1, 16).expand(16, 16), ramp.view(16, 1).expand(16, 16), torch.full((16, 16), 0.3)])
    return Keyed({"table": TextureMap(image=image, mask=torch.ones(16, 16, dtype=torch.bool))})


def noisy_references() -> Keyed[Reference]:
    gen = torch.Generator().manual_seed(0)
    return Keyed({"table": Reference(images=(torch.rand(3, 40, 48, generator=gen),), material="wood")})


def params(weights: Path, **extra: object) -> dict[str, object]:
    return {"weights": str(weights), "steps": 3, "batch_size": 2, "resolution": 32, "crops_per_image": 2,
            "seed": 0, "rank": 2} | extra


def test_stage_nodes_train_and_cache_adapters(tiny_sd: Path) -> None:
    from nodes.sd.loading import load_sd_components

    shared = load_sd_components(str(tiny_sd), "cpu", use_ip_adapter=False)
    shared_before = {k: v.clone() for k, v in shared.unet.state_dict().items()}
    views, texture, refs = flat_views(), smooth_texture(), noisy_references()

    node = TrainDomainShifter(params(tiny_sd, embed_dim=8, synthetic_blocks=[0, 1], synthetic_t_min=0.7))
    adapter = node.run(make_context("shift"), references=refs, views=views, texture=texture)
    assert isinstance(adapter, DomainAdapter) and not adapter.control
    assert adapter.meta["schedule"] == {"synthetic_blocks": [0, 1], "t_min": 0.7}
    assert adapter.meta["stage1"]["real_crops"] == 2 and adapter.meta["stage1"]["synthetic_images"] == 2
    again = node.run(make_context("shift"), references=refs, views=views, texture=texture)
    assert all(torch.equal(again.shifter[k], v) for k, v in adapter.shifter.items())  # deterministic
    decoded = DomainAdapter.from_tensors(*adapter.to_tensors())  # what the cache stores
    assert decoded.meta == adapter.meta

    control_node = TrainControl(params(tiny_sd))
    full = control_node.run(make_context("control"), adapter=decoded, views=views, texture=texture, references=refs)
    assert all(torch.equal(full.shifter[k], v) for k, v in adapter.shifter.items())  # stage 2 keeps shifters
    assert any(k.startswith("lora.") for k in full.control) and any(k.startswith("encoder.") for k in full.control)
    assert full.meta["control"]["downscale"] == 2 and full.meta["stage2"]["steps"] == 3

    # the loader's shared UNet was neither modified nor hooked by training
    assert set(shared.unet.state_dict()) == set(shared_before)
    assert all(torch.equal(v, shared_before[k]) for k, v in shared.unet.state_dict().items())

    # inference: schedule + control on a private copy of the UNet
    import copy

    unet = copy.deepcopy(shared.unet)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    context = torch.zeros(1, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        plain = unet(latents, torch.tensor([900]), encoder_hidden_states=context).sample
        shifter = apply_domain_shifting(unet, full, 0.9)
        assert isinstance(shifter, DomainShifter)
        assert [shifter.block_domain(i) for i in range(3)] == ["synthetic", "synthetic", "real"]
        pathway = load_control(unet, full)
        pathway.set_geometry(geometry_from_views(views.depth[:1], views.normal[:1], 32))
        shifted = unet(latents, torch.tensor([900]), encoder_hidden_states=context).sample
        pathway.remove()
        remove_domain_shifting(unet)
        restored = unet(latents, torch.tensor([900]), encoder_hidden_states=context).sample
    assert shifted.shape == plain.shape and torch.isfinite(shifted).all()
    assert torch.equal(restored, plain)


def test_stage_nodes_report_user_errors(tiny_sd: Path, tmp_path: Path) -> None:
    refs, views, texture = noisy_references(), flat_views(), smooth_texture()
    with pytest.raises(UserError) as missing:
        TrainDomainShifter(params(tmp_path / "nowhere")).run(make_context(), references=refs, views=views,
                                                               texture=texture)
    assert missing.value.param == "weights"
    with pytest.raises(UserError, match="no real images") as no_real:
        TrainDomainShifter(params(tiny_sd)).run(make_context(), views=views, texture=texture)
    assert no_real.value.param == "real_dir"
    with pytest.raises(UserError, match="`views` is not connected"):
        TrainDomainShifter(params(tiny_sd)).run(make_context(), references=refs, texture=texture)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images") as empty:
        TrainDomainShifter(params(tiny_sd, real_dir=str(tmp_path / "empty"))).run(
            make_context(), views=views, texture=texture)
    assert empty.value.param == "real_dir"
    with pytest.raises(UserError, match="out of range") as blocks:
        TrainDomainShifter(params(tiny_sd, synthetic_blocks=[99], steps=1)).run(
            make_context(), references=refs, views=views, texture=texture)
    assert blocks.value.param == "synthetic_blocks"
    broken = Keyed({"sofa": Reference(images=(torch.full((3, 16, 16), float("nan")),))})
    with pytest.raises(UserError, match="'sofa' image 0 is unusable") as bad_image:
        TrainDomainShifter(params(tiny_sd, steps=1)).run(make_context(), references=broken, synthetic=broken)
    assert bad_image.value.item == "sofa"


def test_real_dir_images_are_used(tiny_sd: Path, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        pixels = (torch.rand(36, 36, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    adapter = TrainDomainShifter(params(tiny_sd, real_dir=str(folder), steps=1)).run(
        make_context(), synthetic=Keyed({"a": Reference(images=(torch.full((3, 32, 32), 0.5),))}))
    assert adapter.meta["stage1"]["real_images"] == 2 and adapter.meta["stage1"]["real_crops"] == 4


def test_adapter_is_cached_on_disk_by_the_engine(tiny_sd: Path, tmp_path: Path) -> None:
    import graphflow as gf
    from graphflow.graph import GraphInput

    graph = gf.Graph("domain")
    graph.inputs["refs"] = GraphInput(type="any")
    graph.inputs["synth"] = GraphInput(type="any")
    graph.add("shift", "train.domain_shifter", params=params(tiny_sd, steps=2),
              inputs={"references": "$inputs.refs", "synthetic": "$inputs.synth"})
    graph.outputs["adapter"] = gf.graph.parse_source("shift")
    values = {"refs": noisy_references(),
              "synth": Keyed({"a": Reference(images=(torch.full((3, 32, 32), 0.5),))})}
    first = gf.run(graph, values, cache=tmp_path / "cache")
    again = gf.run(graph, values, cache=gf.open_cache(tmp_path / "cache"))  # a new memory tier: from disk
    assert {e.status for e in again.report.entries} == {"cached"}
    a, b = first.outputs["adapter"], again.outputs["adapter"]
    assert isinstance(b, DomainAdapter) and b.meta == a.meta
    assert all(torch.equal(b.shifter[k], v) for k, v in a.shifter.items())
