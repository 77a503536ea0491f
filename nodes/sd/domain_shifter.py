"""Realiz3D domain shifters for diffusers UNets, and inference-time domain shifting.

A `DomainShifter` holds two learnable domain embeddings (`real`, `synthetic`)
and, per transformer block of the UNet, one low-rank map (LoRA-like: `down`
then `up`, `up` zero-initialised) shared by both domains. The map turns the
current domain's embedding into a per-channel bias that a forward pre-hook
adds to every token entering the block. Diffusers' code is never edited: the
shifter is attached with hooks and detached by removing them.

With `up` at zero the hooks add exact zeros, so the UNet's output is
bit-identical to the backbone's; afterwards the output depends on the domain
only through the embedding fed to the maps.

Block indices count `BasicTransformerBlock`s in *execution* order (down
blocks, mid block, up blocks), so "early blocks" means the encoder side.

Inference-time domain shifting (for `nodes/sd/prior.py`)::

    from nodes.sd.domain_shifter import apply_domain_shifting, remove_domain_shifting
    apply_domain_shifting(unet, adapter, t)   # before each UNet call; t in [0, 1] (or [B])
    eps = unet(x_t, timestep, encoder_hidden_states=...).sample
    remove_domain_shifting(unet)                       # when done: the loader's UNet is shared

`apply_domain_shifting` attaches the adapter's shifter once (it is cached on
the UNet), runs every block in `real` mode except the adapter's configured
early blocks at high-noise timesteps (`t >= t_min`), which run in
`synthetic` mode: the geometry-following synthetic pathway lays out
structure, the real pathway paints appearance.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import save_file

from graphflow import UserError
from nodes.types import Domain, DomainAdapter, DomainSchedule

DOMAINS: tuple[Domain, Domain] = ("real", "synthetic")
REAL, SYNTHETIC = 0, 1
ADAPTER_FORMAT = "graphflow.domain_shifter/1"


def domain_index(domain: str) -> int:
    if domain not in DOMAINS:
        raise UserError(f"unknown domain '{domain}'", param="domain", hint="use 'real' or 'synthetic'")
    return DOMAINS.index(domain)


# ---------------------------------------------------------------- inference schedule


def domain_schedule(block_index: int, t: float, schedule: DomainSchedule) -> Domain:
    """The domain block `block_index` runs in at noise time `t` (real-mode sampling)."""
    return schedule.domain(block_index, t)


def timestep_to_t(timestep: torch.Tensor | int, num_train_timesteps: int) -> torch.Tensor:
    """A scheduler's discrete timestep index -> continuous t in [0, 1]."""
    return torch.as_tensor(timestep, dtype=torch.float32) / float(num_train_timesteps)


# ---------------------------------------------------------------- the module


def find_transformer_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) of every `BasicTransformerBlock`, in execution order."""
    from diffusers.models.attention import BasicTransformerBlock

    groups: list[tuple[str, nn.Module]] = []
    for prefix in ("down_blocks", "mid_block", "up_blocks"):
        sub = getattr(unet, prefix, None)
        if sub is not None:
            groups.append((prefix, sub))
    if not groups:  # not a diffusers UNet2DConditionModel layout: fall back to registration order
        groups = [("", unet)]
    blocks: list[tuple[str, nn.Module]] = []
    for prefix, sub in groups:
        for name, module in sub.named_modules():
            if isinstance(module, BasicTransformerBlock):
                blocks.append((f"{prefix}.{name}" if prefix else name, module))
    return blocks


DomainSpec = str | torch.Tensor  # "real" | "synthetic" | per-sample tensor of 0/1 (REAL/SYNTHETIC)


class DomainShifter(nn.Module):
    """Two domain embeddings and one low-rank bias map per transformer block."""

    def __init__(self, block_names: Sequence[str], block_dims: Sequence[int], rank: int = 4,
                 embed_dim: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(block_names) != len(block_dims) or not block_dims:
            raise ValueError("DomainShifter needs one dim per block and at least one block")
        self.block_names = tuple(block_names)
        self.block_dims = tuple(int(d) for d in block_dims)
        self.rank = int(rank)
        self.embed_dim = int(embed_dim)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.embeddings = nn.Parameter(torch.randn(2, embed_dim, generator=gen))
        self.downs = nn.ModuleList(nn.Linear(embed_dim, rank, bias=False) for _ in block_dims)
        self.ups = nn.ModuleList(nn.Linear(rank, d, bias=False) for d in block_dims)
        with torch.no_grad():
            for down in self.downs:  # LoRA's init: random down (std 1/sqrt(fan_in)), zero up
                down.weight.copy_(torch.randn(down.weight.shape, generator=gen) / embed_dim**0.5)
            for up in self.ups:
                up.weight.zero_()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._domain: DomainSpec = "real"
        self._overrides: dict[int, DomainSpec] = {}
        # A plain reference, not a submodule: the UNet must stay out of the shifter's state_dict.
        self.__dict__["_unet"] = None

    # ---- construction / persistence
    @classmethod
    def for_unet(cls, unet: nn.Module, rank: int = 4, embed_dim: int = 64,
                 generator: torch.Generator | None = None) -> DomainShifter:
        blocks = find_transformer_blocks(unet)
        if not blocks:
            raise UserError("the UNet has no transformer blocks to attach domain shifters to",
                            param="weights", hint="use a Stable Diffusion UNet2DConditionModel")
        return cls([n for n, _ in blocks], [int(m.dim) for _, m in blocks], rank, embed_dim,
                   generator)

    @property
    def num_blocks(self) -> int:
        return len(self.block_dims)

    def meta(self) -> dict[str, Any]:
        return {"format": ADAPTER_FORMAT, "rank": self.rank, "embed_dim": self.embed_dim,
                "blocks": [[n, d] for n, d in zip(self.block_names, self.block_dims, strict=True)]}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().cpu() for k, v in self.state_dict().items()}

    @classmethod
    def from_adapter(cls, adapter: DomainAdapter) -> DomainShifter:
        meta = adapter.meta
        if meta.get("format") != ADAPTER_FORMAT:
            raise UserError(f"not a domain-shifter adapter (format {meta.get('format')!r})", param="adapter",
                            hint=f"expected {ADAPTER_FORMAT}; retrain it with train.domain_shifter")
        names = [b[0] for b in meta["blocks"]]
        dims = [int(b[1]) for b in meta["blocks"]]
        shifter = cls(names, dims, int(meta["rank"]), int(meta["embed_dim"]))
        shifter.load_state_dict(adapter.shifter)
        return shifter

    # ---- domain selection
    def set_domain(self, domain: DomainSpec) -> None:
        """Global domain: 'real', 'synthetic', or a per-sample tensor [B] of REAL/SYNTHETIC ids."""
        self._domain = self._check(domain)

    def set_block_domain(self, block_index: int, domain: DomainSpec | None) -> None:
        """Override one block's domain (None removes the override)."""
        if not 0 <= block_index < self.num_blocks:
            raise IndexError(f"block {block_index} out of range (0..{self.num_blocks - 1})")
        if domain is None:
            self._overrides.pop(block_index, None)
        else:
            self._overrides[block_index] = self._check(domain)

    def set_block_domains(self, overrides: dict[int, DomainSpec]) -> None:
        """Replace all per-block overrides."""
        self._overrides = {}
        for i, d in overrides.items():
            self.set_block_domain(i, d)

    def clear_overrides(self) -> None:
        self._overrides = {}

    def block_domain(self, block_index: int) -> DomainSpec:
        return self._overrides.get(block_index, self._domain)

    @staticmethod
    def _check(domain: DomainSpec) -> DomainSpec:
        if isinstance(domain, str):
            domain_index(domain)
            return domain
        ids = torch.as_tensor(domain).long().flatten()
        if ids.numel() and not bool(((ids == REAL) | (ids == SYNTHETIC)).all()):
            raise ValueError("per-sample domains must be 0 (real) or 1 (synthetic)")
        return ids

    # ---- the bias
    def block_bias(self, block_index: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[batch, dim] bias of one block for its current domain(s)."""
        spec = self.block_domain(block_index)
        if isinstance(spec, str):
            ids = torch.full((batch,), domain_index(spec), dtype=torch.long)
        else:
            ids = spec
            if ids.numel() != batch:
                if ids.numel() == 0 or batch % ids.numel():
                    raise ValueError(f"{ids.numel()} per-sample domains for a batch of {batch}")
                ids = ids.repeat(batch // ids.numel())  # classifier-free guidance concatenates the batch
        emb = self.embeddings.index_select(0, ids.to(self.embeddings.device))
        bias = self.ups[block_index](self.downs[block_index](emb))
        return bias.to(device=device, dtype=dtype)

    # ---- hooks
    def attach(self, unet: nn.Module) -> DomainShifter:
        """Register one forward pre-hook per transformer block of `unet`."""
        self.detach()
        blocks = find_transformer_blocks(unet)
        names = tuple(n for n, _ in blocks)
        if names != self.block_names or tuple(int(b.dim) for _, b in blocks) != self.block_dims:
            raise UserError("the domain adapter was trained for a different UNet (transformer blocks differ)",
                            param="weights", hint="use the same base model the adapter was trained on")
        for index, (_, block) in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(self._make_hook(index), with_kwargs=True))
        self.__dict__["_unet"] = unet
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._unet is not None and getattr(self._unet, "_graphflow_domain_shifter", None) is self:
            del self._unet.__dict__["_graphflow_domain_shifter"]
        self.__dict__["_unet"] = None

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _make_hook(self, index: int):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                hidden = args[0]
                args = (self._shift(index, hidden), *args[1:])
            else:
                kwargs = dict(kwargs)
                kwargs["hidden_states"] = self._shift(index, kwargs["hidden_states"])
            return args, kwargs

        return hook

    def _shift(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        bias = self.block_bias(index, hidden.shape[0], hidden.device, hidden.dtype)
        shape = (hidden.shape[0],) + (1,) * (hidden.dim() - 2) + (hidden.shape[-1],)  # every token
        return hidden + bias.view(shape)

    def apply_schedule(self, schedule: DomainSchedule, t: float | torch.Tensor) -> None:
        """Real mode, with the schedule's blocks synthetic where t >= t_min (t scalar or per-sample [B])."""
        self.set_domain("real")
        t_tensor = torch.as_tensor(t, dtype=torch.float32).flatten()
        overrides: dict[int, DomainSpec] = {}
        for block in schedule.synthetic_blocks:
            if not 0 <= block < self.num_blocks:
                raise UserError(f"schedule names block {block}, the adapter has {self.num_blocks}",
                                param="synthetic_blocks", hint=f"use indices 0..{self.num_blocks - 1}")
            if t_tensor.numel() == 1:
                overrides[block] = domain_schedule(block, float(t_tensor), schedule)
            else:
                overrides[block] = (t_tensor >= schedule.t_min).long() * SYNTHETIC
        self.set_block_domains(overrides)


# ---------------------------------------------------------------- prior integration


def apply_domain_shifting(unet: nn.Module, adapter: DomainAdapter, t: float | torch.Tensor,
                          schedule: DomainSchedule | None = None, domain: Domain = "real") -> DomainShifter:
    """Attach `adapter`'s shifter to `unet` (once) and set real mode with synthetic early blocks at high t.

    Call before each UNet evaluation with that evaluation's noise time `t`
    (continuous, in [0, 1]; scalar or per-sample `[B]`). `schedule` overrides
    the one stored in the adapter's metadata. `domain="synthetic"` runs every
    block in synthetic mode instead (no schedule). Returns the attached
    shifter; `remove_domain_shifting(unet)` restores the plain UNet.
    """
    shifter = getattr(unet, "_graphflow_domain_shifter", None)
    if shifter is None or getattr(shifter, "_source", None) is not adapter:
        if shifter is not None:
            shifter.detach()
        param = next(unet.parameters(), None)
        shifter = DomainShifter.from_adapter(adapter)
        if param is not None:
            shifter.to(device=param.device, dtype=param.dtype)
        shifter.requires_grad_(False)
        shifter.attach(unet)
        shifter._source = adapter  # type: ignore[attr-defined]
        # Kept across calls in the UNet's __dict__ (not as a submodule: its parameters stay the backbone's).
        unet.__dict__["_graphflow_domain_shifter"] = shifter
    if domain_index(domain) == SYNTHETIC:
        shifter.clear_overrides()
        shifter.set_domain("synthetic")
    else:
        shifter.apply_schedule(schedule or adapter.schedule, t)
    return shifter


def remove_domain_shifting(unet: nn.Module) -> None:
    """Detach whatever shifter `apply_domain_shifting` attached to `unet` (no-op when none).

    Call it when the prior is done with a UNet that others share (e.g. one
    cached by `nodes.sd.loading`), so later users get the plain backbone.
    """
    shifter = unet.__dict__.get("_graphflow_domain_shifter")
    if shifter is not None:
        shifter.detach()
        unet.__dict__.pop("_graphflow_domain_shifter", None)


# ---------------------------------------------------------------- safetensors files


def save_adapter(adapter: DomainAdapter, path: str | Path) -> Path:
    """Write the adapter as one safetensors file (`shifter.*`, `control.*` tensors; metadata JSON)."""
    tensors = {f"shifter.{k}": v.contiguous() for k, v in adapter.shifter.items()}
    tensors |= {f"control.{k}": v.contiguous() for k, v in adapter.control.items()}
    path = Path(path)
    save_file(tensors, str(path), metadata={"graphflow": json.dumps(adapter.meta, sort_keys=True)})
    return path


def load_adapter(path: str | Path) -> DomainAdapter:
    path = Path(path)
    if not path.is_file():
        raise UserError("domain adapter file not found", file=str(path), hint="train one with train.domain_shifter")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("graphflow", "{}"))
            shifter = {k[len("shifter."):]: f.get_tensor(k) for k in f.keys() if k.startswith("shifter.")}
            control = {k[len("control."):]: f.get_tensor(k) for k in f.keys() if k.startswith("control.")}
    except Exception as exc:  # a corrupt or foreign file is the user's to replace
        raise UserError(f"cannot read domain adapter: {exc}", file=str(path),
                        hint="pass a .safetensors written by save_adapter") from exc
    if meta.get("format") != ADAPTER_FORMAT:
        raise UserError("not a graphflow domain adapter", file=str(path), hint="pass a file written by save_adapter")
    return DomainAdapter(shifter=shifter, control=control, meta=meta)


__all__ = [
    "DOMAINS", "REAL", "SYNTHETIC", "DomainShifter", "apply_domain_shifting",
    "domain_schedule", "find_transformer_blocks", "load_adapter", "remove_domain_shifting", "save_adapter",
    "timestep_to_t",
]
