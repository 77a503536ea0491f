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
from typing import Any

from .codec import VALUE_TYPES, decode, encode, value_type  # noqa: F401  (the registry lives with the decoder)


class TensorData:
    """Mixin for frozen dataclasses of tensors plus small metadata.

    `to_tensors()` gives `(tensors, meta)`: a flat dict of tensors and a JSON
    tree; `from_tensors` inverts it. Both use the engine's codec.
    """

    def to_tensors(self) -> tuple[dict[str, Any], Any]:
        return encode(self)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Any], meta: Any) -> Any:
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


@value_type
@dataclass(frozen=True)
class FileTree(TensorData):
    """Several files as one value (a document and the images it names, a package and its
    sidecars): graph outputs of this type are written as `DIR/<path>` for every entry of `files`
    by `graphflow run --out DIR`. Paths are relative and '/'-separated; a node that writes files
    which refer to each other chooses their names (a param), so the graph's output name is only
    the label of the entry in report.json. Stored by the cache like any value (one uint8 tensor
    per file)."""

    files: dict[str, bytes]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in self.files:
            check_relative_path(path)


def check_relative_path(path: str) -> None:
    """Refuse a path that could leave the output directory or means different files on different
    systems: empty, absolute, backslashes, drive letters, '.' or '..' parts."""
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or ":" in path
            or any(part in ("", ".", "..") for part in parts)):
        raise ValueError(f"FileTree path {path!r} must be relative, '/'-separated, without '.', '..' or ':'")
