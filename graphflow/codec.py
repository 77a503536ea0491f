"""Encode values as (flat dict of tensors, JSON tree) and back. Never pickle.

Handles None, bool, int, float, str, bytes, Path, list, tuple, dict with str
keys, `Keyed`, torch tensors, numpy arrays and registered value dataclasses
(`value_type`), nested in any way. Anything else raises
`NotEncodable`: such values (a loaded model, say) can live in the memory tier
only.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .keyed import Keyed

T = TypeVar("T", bound=type)

# Registered value types by class name: the only classes the decoder ever builds (never a name from a file).
VALUE_TYPES: dict[str, type] = {}


def value_type(cls: T) -> T:
    """Register a dataclass so cached values of it can be decoded."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be a value type")
    name = cls.__name__
    if name in VALUE_TYPES and VALUE_TYPES[name] is not cls:
        existing = VALUE_TYPES[name]
        if existing.__module__ != cls.__module__ or existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"value type name '{name}' is taken by {existing.__module__}")
    VALUE_TYPES[name] = cls
    return cls


class NotEncodable(TypeError):
    pass


class UnknownValueType(ValueError):
    """A stored value names a dataclass that is not registered in this process (its node
    package is not imported): the entry may be fine, so a reader must not discard it."""


def encode(value: Any) -> tuple[dict[str, torch.Tensor], Any]:
    tensors: dict[str, torch.Tensor] = {}

    def put(t: torch.Tensor) -> str:
        name = f"t{len(tensors)}"
        tensors[name] = t.detach().to("cpu").contiguous()
        return name

    def enc(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return {"__float__": v.hex()}  # exact and JSON-safe for inf/nan
        if isinstance(v, torch.Tensor):
            return {"__tensor__": put(v)}
        if isinstance(v, np.ndarray):
            return {"__ndarray__": put(torch.from_numpy(np.ascontiguousarray(v)))}
        if isinstance(v, (bytes, bytearray)):
            return {"__bytes__": put(torch.frombuffer(bytearray(v), dtype=torch.uint8)) if v else None}
        if isinstance(v, Path):
            return {"__path__": str(v)}
        if isinstance(v, Keyed):
            return {"__keyed__": [[k, enc(x)] for k, x in v.items()]}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            name = type(v).__name__
            if VALUE_TYPES.get(name) is not type(v):
                raise NotEncodable(f"dataclass {name} is not a registered value type")
            return {"__type__": name, "fields": {f.name: enc(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        if isinstance(v, tuple):
            return {"__tuple__": [enc(x) for x in v]}
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise NotEncodable("dict keys must be str")
            if any(k.startswith("__") for k in v):
                return {"__dict__": [[k, enc(x)] for k, x in v.items()]}
            return {k: enc(x) for k, x in v.items()}
        raise NotEncodable(f"cannot store a {type(v).__name__}")

    meta = enc(value)
    return tensors, meta


def decode(tensors: dict[str, torch.Tensor], meta: Any) -> Any:
    def dec(m: Any) -> Any:
        if m is None or isinstance(m, (bool, int, str)):
            return m
        if isinstance(m, list):
            return [dec(x) for x in m]
        if not isinstance(m, dict):
            raise ValueError(f"bad encoded value {type(m).__name__}")
        if "__float__" in m:
            return float.fromhex(m["__float__"])
        if "__tensor__" in m:
            return tensors[m["__tensor__"]]
        if "__ndarray__" in m:
            return tensors[m["__ndarray__"]].numpy()
        if "__bytes__" in m:
            return b"" if m["__bytes__"] is None else tensors[m["__bytes__"]].numpy().tobytes()
        if "__path__" in m:
            return Path(m["__path__"])
        if "__keyed__" in m:
            return Keyed({k: dec(x) for k, x in m["__keyed__"]})
        if "__tuple__" in m:
            return tuple(dec(x) for x in m["__tuple__"])
        if "__dict__" in m:
            return {k: dec(x) for k, x in m["__dict__"]}
        if "__type__" in m:
            cls = VALUE_TYPES.get(m["__type__"])
            if cls is None:
                raise UnknownValueType(f"unknown value type {m['__type__']!r}")
            return cls(**{k: dec(x) for k, x in m["fields"].items()})
        return {k: dec(x) for k, x in m.items()}

    return dec(meta)
