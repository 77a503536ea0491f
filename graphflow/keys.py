"""Cache keys: what a node run's result depends on, as one digest.

The key strategy is separate from storage (`graphflow.cache`) and eviction:
a key is the blake3 digest of canonical JSON of the node type, its version,
its params (pydantic JSON mode, sorted keys, defaults included) and the
content digests of its inputs (never their identities or paths), plus the
item name for one item of a mapped node (nodes may seed per item).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .fingerprint import canonical_json, digest_bytes

KEY_SCHEMA = 1  # bump when the key recipe changes: every old entry becomes a miss


def params_json(params: BaseModel) -> Any:
    return params.model_dump(mode="json")


def run_key(
    node_type: str,
    version: int,
    params: BaseModel | dict[str, Any],
    input_digests: dict[str, str | None],
    item: str | None = None,
) -> str:
    payload = {
        "schema": KEY_SCHEMA,
        "type": node_type,
        "version": version,
        "params": params_json(params) if isinstance(params, BaseModel) else params,
        "inputs": input_digests,
        "item": item,
    }
    return digest_bytes(b"run-key", canonical_json(payload))


def file_digest(path: Path) -> str:
    """Digest of a file's bytes, or of a directory's tree (names and contents)."""
    import blake3

    if path.is_dir():
        parts = []
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            parts.append(f"{child.relative_to(path).as_posix()}:{file_digest(child)}".encode())
        return digest_bytes(b"dir", *parts)
    if not path.exists():
        return digest_bytes(b"missing", str(path).encode())
    h = blake3.blake3()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return digest_bytes(b"file", h.digest())


def path_digest(path: Path, dependencies: list[Path] = ()) -> str:  # type: ignore[assignment]
    """A file input is keyed by its content and by the content of the files it names
    (a .gltf's buffers, a references file's images), never by its location."""
    parts = [file_digest(path).encode()] + [file_digest(Path(d)).encode() for d in dependencies]
    return digest_bytes(b"path", *parts)
