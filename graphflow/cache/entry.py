"""The unit of caching: one run's outputs with their digests."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..keyed import Keyed


@dataclass
class Entry:
    key: str
    outputs: dict[str, Any]
    digests: dict[str, str]  # output name -> content digest
    item_digests: dict[str, dict[str, str]] = field(default_factory=dict)  # output -> {item: digest} for Keyed
    seconds: float = 0.0
    nbytes: int = 0
    notes: list[str] = field(default_factory=list)  # the run's `ctx.note(...)`s: a cached item reports them too


def value_nbytes(value: Any) -> int:
    """Approximate memory held by a value (tensors and bytes; metadata ignored)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (Keyed, dict)):
        return sum(value_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(value_nbytes(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(value_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0
