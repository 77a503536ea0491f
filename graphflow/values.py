"""Value types the engine knows how to store: registered dataclasses and file blobs.

Port types defined outside the engine (in `nodes.types`) are frozen
dataclasses that subclass `TensorData` and are decorated with
`@value_type`; the cache can then store them as safetensors + JSON and decode
them again without ever importing code named by a file (only registered
classes are decoded).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

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


class TensorData:
    """Mixin for frozen dataclasses of tensors plus small metadata.

    `to_tensors()` gives `(tensors, meta)`: a flat dict of tensors and a JSON
    tree; `from_tensors` inverts it. Both use the engine's codec.
    """

    def to_tensors(self) -> tuple[dict[str, Any], Any]:
        from .codec import encode

        return encode(self)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any], meta: Any) -> Any:
        from .codec import decode

        value = decode(tensors, meta)
        if not isinstance(value, cls):
            raise TypeError(f"decoded {type(value).__name__}, expected {cls.__name__}")
        return value


@value_type
@dataclass(frozen=True)
class FileBlob(TensorData):
    """A file's bytes as a value: graph outputs of this type are written as
    `DIR/<output name><suffix>` by `graphflow run --out DIR`."""

    data: bytes
    suffix: str
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
