"""Load Stable Diffusion components from a local diffusers directory or the local HF cache; never download.

`weights` is either a directory in diffusers layout (`unet/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/`, ...) or a hub id such as
`stable-diffusion-v1-5/stable-diffusion-v1-5` that must already be in the
local Hugging Face cache. An IP-Adapter is looked up under the same
directory: `ip_adapter/*.safetensors` (or `ip_adapter/models/ip-adapter_sd15.safetensors`,
the layout of `huggingface-cli download h94/IP-Adapter --local-dir DIR/ip_adapter`)
with its CLIP image encoder in `image_encoder/` next to that file or at the
top level. Loaded components are cached per process (a small LRU) because
every distillation item of a run reuses them.
"""
from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from graphflow import UserError


SD_DOWNLOAD_HINT = (
    "download them on a machine with internet, e.g. "
    "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR` and, for per-instance "
    "references, `huggingface-cli download h94/IP-Adapter models/ip-adapter_sd15.safetensors models/image_encoder "
    "--local-dir DIR/ip_adapter`; then pass `--input weights=DIR`"
)
UPSCALER_DOWNLOAD_HINT = (
    "download them on a machine with internet, e.g. "
    "`huggingface-cli download stabilityai/stable-diffusion-x4-upscaler --local-dir DIR`; "
    "then pass `--input weights=DIR`"
)
SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
UPSCALER_SUBFOLDERS = SD_SUBFOLDERS + ("low_res_scheduler",)
CACHE_SIZE = 2  # pipelines kept per process; SD 1.5 in fp16 is ~2 GB each


@dataclass
class SDComponents:
    """The pieces of a Stable Diffusion pipeline the priors use (all modules in eval mode, frozen)."""

    root: Path
    unet: Any  # diffusers.UNet2DConditionModel (IP-Adapter processors installed when image_encoder is set)
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    scheduler: Any  # diffusers.DDPMScheduler (training noise schedule)
    image_encoder: Any | None = None  # transformers.CLIPVisionModelWithProjection
    controlnet: Any | None = None  # diffusers.ControlNetModel (depth), optional
    low_res_scheduler: Any | None = None  # x4 upscaler only
    max_noise_level: int = 350  # x4 upscaler only

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


_CACHE: OrderedDict[tuple[Any, ...], SDComponents] = OrderedDict()


def clear_cache() -> None:
    """Forget every cached pipeline (tests, or to free memory)."""
    _CACHE.clear()


def resolve_weights(
    weights: str, *, required: tuple[str, ...] = SD_SUBFOLDERS, hint: str = SD_DOWNLOAD_HINT, param: str = "weights",
) -> Path:
    """A local directory for `weights` (a path, or a hub id already in the HF cache), checked for `required` subfolders.

    Every failure is a `UserError` naming `param` and the path, with `hint` saying how to get the files.
    """
    what = "Stable Diffusion weights" if param == "weights" else param
    if not weights or not str(weights).strip():
        raise UserError(f"no {what} given", param=param, hint=hint)
    path = Path(weights).expanduser()
    if not path.exists():
        path = _from_hf_cache(weights, hint, param, what)
    if not path.is_dir():
        raise UserError(f"{what} '{weights}' is not a directory in diffusers layout", param=param,
                        file=str(weights), hint=hint)
    missing = [name for name in required if not (path / name).is_dir()]
    if missing:
        raise UserError(f"{what} at '{path}' lack the subfolder(s) {', '.join(missing)}", param=param,
                        file=str(path), hint=hint)
    return path


def _from_hf_cache(weights: str, hint: str, param: str, what: str) -> Path:
    looks_like_hub_id = weights.count("/") == 1 and not weights.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise UserError(f"{what} directory '{weights}' does not exist", param=param, file=weights, hint=hint)
    from huggingface_hub import snapshot_download

    try:
        # local_files_only: a missing model is an error here, never a download.
        return Path(snapshot_download(repo_id=weights, local_files_only=True))
    except Exception as error:  # noqa: BLE001 - huggingface_hub raises several types for "not cached"
        raise UserError(
            f"{what} '{weights}' are neither a local directory nor in the local Hugging Face cache "
            f"({type(error).__name__})", param=param, file=weights, hint=hint,
        ) from error


def find_ip_adapter(root: Path) -> tuple[Path, Path] | None:
    """(IP-Adapter safetensors file, its CLIP image-encoder directory) under `root`, or None."""
    for folder in (root / "ip_adapter", root / "ip_adapter" / "models", root / "models", root):
        files = sorted(folder.glob("ip-adapter*.safetensors")) if folder.is_dir() else []
        if not files:
            continue
        preferred = [f for f in files if f.name == "ip-adapter_sd15.safetensors"] or files
        for encoder in (folder / "image_encoder", root / "image_encoder", root / "ip_adapter" / "image_encoder"):
            if (encoder / "config.json").is_file():
                return preferred[0], encoder
    return None


def _load_ip_adapter_state(file: Path) -> dict[str, dict[str, torch.Tensor]]:
    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(file), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            group, _, rest = key.partition(".")
            if group in state:
                state[group][rest] = handle.get_tensor(key)
    hint = "use h94/IP-Adapter's models/ip-adapter_sd15.safetensors"
    if not state["image_proj"] or not state["ip_adapter"]:
        raise UserError(f"'{file}' is not an IP-Adapter checkpoint (no image_proj./ip_adapter. tensors)",
                        param="weights", file=str(file), hint=hint)
    if "proj.weight" not in state["image_proj"]:
        # Plus/FaceID variants project CLIP hidden states, not the pooled image embedding this prior feeds.
        raise UserError(f"'{file}' is an IP-Adapter variant (plus/face) this prior does not support",
                        param="weights", file=str(file), hint=hint)
    return state


def _freeze(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    module.to(device=device, dtype=dtype)
    module.requires_grad_(False)
    module.eval()
    return module


def _from_pretrained(loader: Any, path: Path, subfolder: str, hint: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(str(path), subfolder=subfolder, local_files_only=True, **kwargs)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise UserError(f"could not load '{path / subfolder}': {error}".splitlines()[0], param="weights",
                        file=str(path / subfolder), hint=hint) from error


def resolve_controlnet(controlnet: str | None, root: Path) -> Path | None:
    """The depth ControlNet dir: None (off), "auto" (`root/controlnet` when present), or a path / cached hub id."""
    if controlnet is None:
        return None
    if controlnet == "auto":
        candidate = root / "controlnet"
        return candidate if (candidate / "config.json").is_file() else None
    hint = ("download one on a machine with internet, e.g. `huggingface-cli download lllyasviel/sd-controlnet-depth "
            "--local-dir DIR/controlnet`, or leave controlnet unset")
    path = resolve_weights(controlnet, required=(), hint=hint, param="controlnet")
    if not (path / "config.json").is_file():
        raise UserError(f"'{path}' is not a ControlNet (no config.json)", param="controlnet", file=str(path), hint=hint)
    return path


def require_sd_packages() -> None:
    """diffusers/transformers/peft are the optional `sd` extra: say how to install them instead of an ImportError."""
    missing = [name for name in ("diffusers", "transformers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"Stable Diffusion support is not installed (missing {', '.join(missing)})", param="prior",
                        hint="pip install 'graphflow[sd]', or use prior closed_form")


def load_sd_components(
    weights: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
    use_ip_adapter: bool = True, controlnet: str | None = "auto",
) -> SDComponents:
    """UNet, VAE, text encoder, tokenizer, scheduler (and IP-Adapter + image encoder, depth ControlNet); cached.

    Raises `UserError(param="weights")` when the weights or the IP-Adapter (with `use_ip_adapter`) are missing.
    `controlnet`: None, "auto" (the `controlnet/` subfolder of `weights` when present) or a path / cached hub id.
    """
    require_sd_packages()
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    device = torch.device(device)
    root = resolve_weights(weights)
    controlnet_dir = resolve_controlnet(controlnet, root)
    key = ("sd", str(root.resolve()), str(device), str(dtype), use_ip_adapter, str(controlnet_dir))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ip_adapter = find_ip_adapter(root) if use_ip_adapter else None
    if use_ip_adapter and ip_adapter is None:
        raise UserError(
            f"no IP-Adapter under '{root}' (looked for ip_adapter/ip-adapter*.safetensors with an image_encoder/)",
            param="weights", file=str(root),
            hint="download it with `huggingface-cli download h94/IP-Adapter models/ip-adapter_sd15.safetensors "
                 "models/image_encoder --local-dir DIR/ip_adapter`, or set use_ip_adapter false",
        )
    hint = SD_DOWNLOAD_HINT
    unet = _from_pretrained(UNet2DConditionModel, root, "unet", hint)
    image_encoder = None
    if ip_adapter is not None:
        file, encoder_dir = ip_adapter
        unet._load_ip_adapter_weights([_load_ip_adapter_state(file)], low_cpu_mem_usage=False)
        image_encoder = _from_pretrained(CLIPVisionModelWithProjection, encoder_dir, "", hint)
    components = SDComponents(
        **_pipeline_modules(root, unet, device, dtype, hint),
        image_encoder=None if image_encoder is None else _freeze(image_encoder, device, dtype),
        controlnet=None if controlnet_dir is None else _freeze(
            _from_pretrained(ControlNetModel, controlnet_dir, "", hint), device, dtype),
    )
    _remember(key, components)
    return components


def load_upscaler_components(
    weights: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
) -> SDComponents:
    """The x4 upscaler's UNet (7 input channels, noise-level class labels), VAE, text encoder and schedulers; cached."""
    require_sd_packages()
    from diffusers import DDPMScheduler, UNet2DConditionModel

    device = torch.device(device)
    hint = UPSCALER_DOWNLOAD_HINT
    root = resolve_weights(weights, required=UPSCALER_SUBFOLDERS, hint=hint)
    key = ("upscaler", str(root.resolve()), str(device), str(dtype))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    unet = _from_pretrained(UNet2DConditionModel, root, "unet", hint)
    if unet.config.in_channels != 7:
        raise UserError(f"'{root}' is not an x4 upscaler: its UNet takes {unet.config.in_channels} channels, not 7",
                        param="weights", file=str(root), hint=hint)
    max_noise_level = 350
    index = root / "model_index.json"
    if index.is_file():
        max_noise_level = int(json.loads(index.read_text()).get("max_noise_level", max_noise_level))
    components = SDComponents(
        **_pipeline_modules(root, unet, device, dtype, hint),
        low_res_scheduler=_from_pretrained(DDPMScheduler, root, "low_res_scheduler", hint),
        max_noise_level=max_noise_level,
    )
    _remember(key, components)
    return components


def _pipeline_modules(root: Path, unet: Any, device: torch.device, dtype: torch.dtype, hint: str) -> dict[str, Any]:
    """The modules every SD pipeline has: the given UNet and the VAE, text encoder, tokenizer and scheduler."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    return {
        "root": root,
        "unet": _freeze(unet, device, dtype),
        "vae": _freeze(_from_pretrained(AutoencoderKL, root, "vae", hint), device, dtype),
        "text_encoder": _freeze(_from_pretrained(CLIPTextModel, root, "text_encoder", hint), device, dtype),
        "tokenizer": _from_pretrained(CLIPTokenizer, root, "tokenizer", hint),
        "scheduler": _from_pretrained(DDPMScheduler, root, "scheduler", hint),
    }


def _remember(key: tuple[Any, ...], components: SDComponents) -> None:
    _CACHE[key] = components
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)


def encode_prompts(components: SDComponents, prompts: list[str]) -> torch.Tensor:
    """CLIP text embeddings `[N, 77, D]` (last hidden state, as SD's pipelines use)."""
    tokens = components.tokenizer(
        prompts, padding="max_length", max_length=components.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )
    device = components.text_encoder.device
    with torch.no_grad():
        return components.text_encoder(tokens.input_ids.to(device))[0]
