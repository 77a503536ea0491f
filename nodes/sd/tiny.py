"""Tiny randomly initialised Stable Diffusion pipelines in diffusers layout, for tests and CPU demos.

Nothing is downloaded: every component is built from a config, the CLIP
tokenizer from a byte-level vocabulary written here. `build_tiny_sd` writes an
SD 1.x-style pipeline plus an IP-Adapter (`ip_adapter/ip-adapter.safetensors`
and `ip_adapter/image_encoder/`, the layout of h94/IP-Adapter's `models/`);
`build_tiny_upscaler` writes an SD x4-upscaler-style pipeline. Both take a
few seconds on a CPU and give the same bytes for the same seed.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY_CROSS_ATTENTION_DIM = 32
TINY_IMAGE_EMBED_DIM = 32
IP_ADAPTER_TOKENS = 4  # what diffusers assumes for a plain IP-Adapter ("proj.weight" in image_proj)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Module constructors draw from the global RNG; fork it so the caller's stream is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map (same as transformers' CLIP tokenizer)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def write_tiny_clip_tokenizer(directory: Path) -> "CLIPTokenizer":  # noqa: F821 (lazy import)
    """A character-level CLIP BPE tokenizer (every byte and byte+'</w>', no merges), saved to `directory`."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    vocab_file = directory / "vocab.json"
    merges_file = directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77, pad_token="<|endoftext|>")
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def _tiny_text_encoder(tokenizer: "CLIPTokenizer") -> "CLIPTextModel":  # noqa: F821
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_CROSS_ATTENTION_DIM, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def _tiny_unet(in_channels: int, num_class_embeds: int | None = None) -> "UNet2DConditionModel":  # noqa: F821
    from diffusers import UNet2DConditionModel

    # Cross-attention at both resolutions so IP-Adapter masks act at 16x16 and 8x8.
    return UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM, attention_head_dim=8, norm_num_groups=16,
        num_class_embeds=num_class_embeds,
    ).eval()


def _tiny_vae(num_blocks: int, scaling_factor: float) -> "AutoencoderKL":  # noqa: F821
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32)[:num_blocks],
        down_block_types=("DownEncoderBlock2D",) * num_blocks, up_block_types=("UpDecoderBlock2D",) * num_blocks,
        layers_per_block=1, norm_num_groups=16, sample_size=32, scaling_factor=scaling_factor,
    ).eval()


def _ip_adapter_state_dict(
    unet: "UNet2DConditionModel", generator: torch.Generator,  # noqa: F821
) -> dict[str, torch.Tensor]:
    """Random IP-Adapter weights in the flat safetensors layout diffusers' `load_ip_adapter` reads."""
    state: dict[str, torch.Tensor] = {}
    width = TINY_CROSS_ATTENTION_DIM
    projection = torch.randn(IP_ADAPTER_TOKENS * width, TINY_IMAGE_EMBED_DIM, generator=generator)
    state["image_proj.proj.weight"] = projection / TINY_IMAGE_EMBED_DIM**0.5
    state["image_proj.proj.bias"] = torch.zeros(IP_ADAPTER_TOKENS * width)
    state["image_proj.norm.weight"] = torch.ones(width)
    state["image_proj.norm.bias"] = torch.zeros(width)
    # diffusers numbers every attention processor and keeps the odd ones (attn2, cross-attention).
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        for proj in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{key_id}.{proj}.weight"] = torch.randn(hidden, width, generator=generator) / width**0.5
        key_id += 2
    return state


def _tiny_controlnet(unet: "UNet2DConditionModel", generator: torch.Generator) -> "ControlNetModel":  # noqa: F821
    """A depth ControlNet copied from the UNet; its zero convolutions get small random weights so depth matters."""
    from diffusers import ControlNetModel

    # One stride-2 step in the condition embedding: the tiny VAE downsamples by 2.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).eval()
    zero_convs = list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block,
                                                            controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.05)
    return controlnet


def build_tiny_sd(directory: Path, seed: int = 0) -> Path:
    """Write a tiny SD 1.x-style pipeline (unet, vae, text_encoder, tokenizer, scheduler), an IP-Adapter
    and a depth ControlNet (`controlnet/`).

    Latents are 4x16x16 and images 32x32 (VAE factor 2). Returns `directory`.
    """
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tiny_clip_tokenizer(directory / "tokenizer")
    with _seeded(seed):
        unet = _tiny_unet(in_channels=4)
        vae = _tiny_vae(num_blocks=2, scaling_factor=0.18215)
        text_encoder = _tiny_text_encoder(tokenizer)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, projection_dim=TINY_IMAGE_EMBED_DIM, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, image_size=32, patch_size=8,
        )).eval()
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", clip_sample=False, steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(directory))
    ip_dir = directory / "ip_adapter"
    ip_dir.mkdir(exist_ok=True)
    image_encoder.save_pretrained(str(ip_dir / "image_encoder"))
    generator = torch.Generator().manual_seed(seed + 1)
    save_file(_ip_adapter_state_dict(unet, generator), str(ip_dir / "ip-adapter.safetensors"))
    _tiny_controlnet(unet, generator).save_pretrained(str(directory / "controlnet"))
    return directory


def build_tiny_upscaler(directory: Path, seed: int = 0) -> Path:
    """Write a tiny SD x4-upscaler-style pipeline: UNet on 4 latent + 3 low-res channels, noise level as class label.

    The VAE downsamples x4, so the low-res condition lives at the latent size (16x16) and images are 64x64.
    """
    from diffusers import DDPMScheduler, StableDiffusionUpscalePipeline

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tiny_clip_tokenizer(directory / "tokenizer")
    with _seeded(seed):
        unet = _tiny_unet(in_channels=7, num_class_embeds=1000)
        vae = _tiny_vae(num_blocks=3, scaling_factor=0.08333)
        text_encoder = _tiny_text_encoder(tokenizer)
    # The real x4 upscaler: v-prediction, scaled-linear betas; a linear low-res scheduler, max noise level 350.
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
        prediction_type="v_prediction", clip_sample=False, steps_offset=1,
    )
    low_res_scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
    )
    pipeline = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, low_res_scheduler=low_res_scheduler,
        scheduler=scheduler, max_noise_level=350,
    )
    pipeline.save_pretrained(str(directory))
    return directory


def main(argv: list[str] | None = None) -> None:
    """`python -m nodes.sd.tiny DIR [--upscaler] [--seed N]`: write tiny weights for `--input weights=DIR`."""
    parser = argparse.ArgumentParser(prog="python -m nodes.sd.tiny", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--upscaler", action="store_true", help="write the x4 upscaler instead of SD 1.x")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_tiny_upscaler if args.upscaler else build_tiny_sd
    print(build(args.directory, seed=args.seed))


if __name__ == "__main__":
    main()
