"""glTF extensions at load time: which ones graphflow reads, which it may ignore, which stop a load.

A file lists the extensions it uses in `extensionsUsed` and those a reader
must understand in `extensionsRequired`. The rules (issue 14):
- an extension in `HANDLED` is read (see each entry);
- an extension in `APPEARANCE_ONLY` changes only how the source materials
  shade, which graphflow replaces with its own textures, so it is ignored
  even when required;
- an extension in `UNSUPPORTED` or unknown is an error (`UserError` naming it
  and the file) when required; when optional it is ignored with a one-line
  note, as the glTF spec allows (the file then carries a fallback).

Draco (`KHR_draco_mesh_compression`) is decoded with DracoPy; meshopt
(`EXT_meshopt_compression`) has no maintained Python decoder, so a file that
requires it fails at load naming the extension.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from graphflow import UserError

DRACO = "KHR_draco_mesh_compression"
MESHOPT = "EXT_meshopt_compression"
TEXTURE_TRANSFORM = "KHR_texture_transform"
WEBP = "EXT_texture_webp"
QUANTIZATION = "KHR_mesh_quantization"
GPU_INSTANCING = "EXT_mesh_gpu_instancing"
BASISU = "KHR_texture_basisu"

HANDLED: dict[str, str] = {
    TEXTURE_TRANSFORM: "applied to the baseColor texture lookup (Scene.source_uvs)",
    "KHR_materials_variants": "each primitive's default material is used",
    DRACO: "compressed primitives are decoded with DracoPy",
    QUANTIZATION: "integer positions, normals, tangents and UVs are read (normalized where marked)",
    WEBP: "WebP baseColor images are decoded",
    GPU_INSTANCING: "each GPU instance of a node becomes its own part, named <node>_<k>",
    BASISU: "KTX2 images are not decoded (no maintained Python wheel: pyktx builds libktx from source): a part "
            "whose baseColor has no PNG/JPEG/WebP source records it as unreadable (loader.require_part_textures)",
}
APPEARANCE_ONLY = frozenset({
    "KHR_materials_sheen", "KHR_materials_clearcoat", "KHR_materials_transmission", "KHR_materials_volume",
    "KHR_materials_ior", "KHR_materials_specular", "KHR_materials_emissive_strength", "KHR_materials_iridescence",
    "KHR_materials_anisotropy", "KHR_materials_unlit", "KHR_materials_dispersion",
    "KHR_materials_diffuse_transmission", "KHR_materials_pbrSpecularGlossiness", "KHR_lights_punctual",
    "EXT_lights_image_based", "KHR_xmp", "KHR_xmp_json_ld",
})
UNSUPPORTED: dict[str, str] = {
    MESHOPT: "decompress it first (gltfpack without -c, or your exporter's glTF export without compression)",
}
NEUTRAL_TRANSFORM = {"offset": [0.0, 0.0], "rotation": 0.0, "scale": [1.0, 1.0]}


def _names(raw: dict[str, Any], key: str, fail: Callable[..., UserError]) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise fail(f"'{key}' must be a list of extension names")
    return value


def check_extensions(raw: dict[str, Any], fail: Callable[..., UserError], name: str,
                     log: logging.Logger) -> set[str]:
    """Apply the module's rules to a document's extension lists; returns the names it uses.

    `fail(message, hint)` builds the file's `UserError`; the note for ignored optional extensions is one
    `log.info` line naming them.
    """
    used = _names(raw, "extensionsUsed", fail)
    required = _names(raw, "extensionsRequired", fail)
    draco_ok = draco_available() if DRACO in used or DRACO in required else False
    blocked = [e for e in required if e not in HANDLED and e not in APPEARANCE_ONLY]
    if DRACO in required and not draco_ok:
        blocked.append(DRACO)
    if blocked:
        hints = [UNSUPPORTED[e] for e in blocked if e in UNSUPPORTED]
        if DRACO in blocked:
            hints.append("install DracoPy (pip install DracoPy) or re-export without Draco compression")
        raise fail(f"the file requires glTF extension(s) {', '.join(sorted(set(blocked)))}, which graphflow "
                   "cannot read", hint="; ".join(hints) or "re-export the scene without them; the file lists "
                   "them in extensionsRequired")
    ignored = sorted(set(used) - set(required) - set(HANDLED) - APPEARANCE_ONLY)
    if DRACO in used and DRACO not in required and not draco_ok:
        ignored.append(DRACO)
    if ignored:
        log.info("%s: ignoring optional glTF extension(s) %s (graphflow does not read them; the file's "
                 "fallback data is used)", name, ", ".join(ignored))
    return set(used) | set(required)


def texture_transform(extensions: Any) -> dict[str, Any] | None:
    """A textureInfo's KHR_texture_transform as `{offset, rotation, scale, texCoord?}` (defaults filled),
    or None when absent. Raises ValueError on malformed values (the caller names the material)."""
    if not isinstance(extensions, dict) or not isinstance(extensions.get(TEXTURE_TRANSFORM), dict):
        return None
    raw = extensions[TEXTURE_TRANSFORM]
    out: dict[str, Any] = {}
    for key, default in NEUTRAL_TRANSFORM.items():
        value = raw.get(key, default)
        size = 1 if key == "rotation" else 2
        values = [value] if size == 1 else value
        if not isinstance(values, list) or len(values) != size or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in values):
            raise ValueError(f"KHR_texture_transform.{key} must be {'a number' if size == 1 else '2 numbers'}")
        out[key] = float(value) if size == 1 else [float(x) for x in value]
    if "texCoord" in raw:
        if not isinstance(raw["texCoord"], int) or isinstance(raw["texCoord"], bool) or raw["texCoord"] < 0:
            raise ValueError("KHR_texture_transform.texCoord must be a non-negative integer")
        out["texCoord"] = raw["texCoord"]
    return out


def is_identity(transform: dict[str, Any] | None) -> bool:
    """True when a transform leaves UVs unchanged (so they stay bit-identical)."""
    return transform is None or all(transform.get(k, v) == v for k, v in NEUTRAL_TRANSFORM.items())


def draco_available() -> bool:
    try:
        import DracoPy  # noqa: F401
    except ImportError:
        return False
    return True


def decode_draco(data: bytes, attributes: dict[str, int], fail: Callable[..., UserError],
                 label: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Decode one KHR_draco_mesh_compression bufferView: (faces [F, 3] int64, attribute name -> [N, k])."""
    import DracoPy

    try:
        mesh = DracoPy.decode(bytes(data))
    except Exception as exc:  # noqa: BLE001 - the decoder raises several types on corrupt data
        raise fail(f"{label}: the {DRACO} data cannot be decoded ({type(exc).__name__}: {exc})",
                   hint="the file is corrupt or truncated; re-export it") from None
    faces = getattr(mesh, "faces", None)
    if faces is None or len(faces) == 0:
        raise fail(f"{label}: the {DRACO} data holds no triangles")
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    out: dict[str, np.ndarray] = {}
    for name, unique_id in attributes.items():
        attribute = mesh.get_attribute_by_unique_id(unique_id) if isinstance(unique_id, int) else None
        if attribute is None:
            raise fail(f"{label}: {DRACO} names attribute {name} as id {unique_id!r}, which the data lacks")
        values = np.asarray(attribute["data"])
        out[name] = values.reshape(len(values), -1)
    if "POSITION" not in out:
        raise fail(f"{label}: the {DRACO} extension has no POSITION attribute")
    count = len(out["POSITION"])
    for name, values in out.items():
        if len(values) != count:
            raise fail(f"{label}: {DRACO} attribute {name} has {len(values)} values but POSITION has {count}")
    if int(faces.max()) >= count or int(faces.min()) < 0:
        raise fail(f"{label}: the {DRACO} data has a vertex index out of range for {count} vertices")
    return faces, out
