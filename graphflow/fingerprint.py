"""Content digests of values, extensible per type (functools.singledispatch).

`fingerprint(value)` returns a hex digest that depends only on content:
equal tensors give equal digests whatever their device or strides. Register
a faster or more meaningful digest for your own type with
`@fingerprint.register(MyType)`. Values that cannot be fingerprinted raise
`NotFingerprintable`; the engine then uses the run's key as their digest.
"""
from __future__ import annotations

import json
from functools import singledispatch
from typing import Any

import blake3
import numpy as np
import torch

from .codec import NotEncodable, encode
from .keyed import Keyed


class NotFingerprintable(TypeError):
    pass


def digest_bytes(*parts: bytes) -> str:
    h = blake3.blake3()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous()
    header = f"{t.dtype}|{tuple(t.shape)}".encode()
    raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return digest_bytes(header, raw)


@singledispatch
def fingerprint(value: Any) -> str:
    try:
        tensors, meta = encode(value)
    except NotEncodable as exc:
        raise NotFingerprintable(str(exc)) from exc
    parts = [canonical_json(meta)]
    parts += [f"{name}:{tensor_digest(t)}".encode() for name, t in sorted(tensors.items())]
    return digest_bytes(*parts)


@fingerprint.register
def _(value: torch.Tensor) -> str:
    return tensor_digest(value)


@fingerprint.register
def _(value: np.ndarray) -> str:
    return tensor_digest(torch.from_numpy(np.ascontiguousarray(value)))


@fingerprint.register
def _(value: bytes) -> str:
    return digest_bytes(b"bytes", value)


def item_digests(value: Keyed[Any]) -> dict[str, str]:
    return {k: fingerprint(v) for k, v in value.items()}


def keyed_digest(items: dict[str, str]) -> str:
    """Digest of a keyed collection from its items' digests (order matters)."""
    return digest_bytes(b"keyed", canonical_json([[k, d] for k, d in items.items()]))


@fingerprint.register
def _(value: Keyed) -> str:
    return keyed_digest(item_digests(value))
