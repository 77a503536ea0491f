"""glTF materials as the loader reads them: the baseColor factor and texture (WebP preferred, KTX2
recorded as unreadable), the TEXCOORD set and KHR_texture_transform it is sampled with."""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import torch

from graphflow import UserError

from . import gltf_ext
from .gltf_ext import BASISU, WEBP
from .gltf_reader import GltfReader
from .gltf_schema import is_int
from .images import decode_image_bytes, fit_long_side, load_image


class MaterialReader(GltfReader):
    """The materials and images of one load (see `GltfReader`)."""


    # ---- materials ----
    def material_of(self, index: Any, label: str) -> tuple[str, dict[str, Any], torch.Tensor | None]:
        """(material name, extra part info, linear baseColor texture or None)."""
        if index is None:
            return "default", {}, None
        mat = self.item("materials", index, f"{label}.material")
        name = mat.name if isinstance(mat.name, str) and mat.name else f"material_{index}"
        info: dict[str, Any] = {}
        pbr = mat.pbrMetallicRoughness
        factor = [1.0, 1.0, 1.0, 1.0]
        texture = None
        if pbr is not None and not isinstance(pbr, (int, float, str, list)):
            if pbr.baseColorFactor is not None:
                factor = self.vector(pbr.baseColorFactor, 4, f"materials[{index}].baseColorFactor", factor).tolist()
            info["base_color_factor"] = [float(x) for x in factor]
            tex_info = pbr.baseColorTexture
            if tex_info is not None and not isinstance(tex_info, (int, float, str, list)):
                info.update(self.texture_lookup(tex_info, index))
                texture, unreadable = self.base_color(tex_info.index, index, tuple(float(x) for x in factor[:3]))
                if unreadable is not None:
                    info["unreadable_texture"] = unreadable
        return name, info, texture

    def base_color_texcoord(self, index: Any, label: str) -> int:
        """The TEXCOORD set a material's baseColor reads (0 without a material or texture); decodes nothing."""
        if index is None:
            return 0
        pbr = self.item("materials", index, f"{label}.material").pbrMetallicRoughness
        tex_info = getattr(pbr, "baseColorTexture", None) if not isinstance(pbr, (int, float, str, list)) else None
        if tex_info is None or isinstance(tex_info, (int, float, str, list)):
            return 0
        return int(self.texture_lookup(tex_info, index).get("base_color_texcoord", 0))

    def texture_lookup(self, tex_info: Any, material_index: int) -> dict[str, Any]:
        """Part info saying where the baseColor is sampled: `base_color_texcoord` (when not 0) and
        `base_color_texture_transform` (when KHR_texture_transform is present and not the identity)."""
        where = f"materials[{material_index}].pbrMetallicRoughness.baseColorTexture"
        texcoord = self.uint(tex_info.texCoord, f"{where}.texCoord", default=0)
        try:
            transform = gltf_ext.texture_transform(tex_info.extensions)
        except ValueError as exc:
            raise self.fail(f"{where}: {exc}") from None
        info: dict[str, Any] = {}
        if transform is not None:
            texcoord = transform.pop("texCoord", texcoord)  # the extension's texCoord overrides the textureInfo's
            if not gltf_ext.is_identity(transform):
                info["base_color_texture_transform"] = transform
        if texcoord != 0:
            info["base_color_texcoord"] = texcoord
        return info

    def base_color(self, texture_index: Any, material_index: int, factor: tuple[float, float, float]
                   ) -> tuple[torch.Tensor | None, dict[str, str] | None]:
        """(the tinted baseColor or None, the record of an image that could not be read or None).

        An image that cannot be decoded (KTX2, a format Pillow lacks, corrupt bytes, over max_pixels) or a
        missing image file does not stop the load (issue 23): most graphs replace the source textures, and
        the node that reads them raises from the record (`loader.require_part_textures`)."""
        tex = self.item("textures", texture_index, f"materials[{material_index}].baseColorTexture")
        source = tex.source
        extensions = tex.extensions if isinstance(tex.extensions, dict) else {}
        webp = extensions.get(WEBP)
        if isinstance(webp, dict) and is_int(webp.get("source")):
            source = webp["source"]  # preferred over the fallback `source` (Pillow decodes WebP)
        basisu = extensions.get(BASISU)
        if source is None and isinstance(basisu, dict) and is_int(basisu.get("source")):
            return None, self.unreadable(basisu["source"], f"textures[{texture_index}]", "KTX2 (KHR_texture_basisu) "
                                         "images are not decoded: no Python KTX2 decoder is installed")
        if source is None:
            self.log.info("%s: textures[%s] has no PNG/JPEG/WebP source; its part gets no texture", self.name,
                          texture_index)
            return None, None
        key = (int(source) if is_int(source) else -1, factor)
        if key not in self.textures:
            try:
                pixels = self.image_pixels(source, f"textures[{texture_index}].source")
            except UserError as exc:
                if exc.param is not None or not exc.file or exc.file == self.name:
                    raise  # the glTF JSON itself is at fault (a bad index, a uri that is not relative)
                return None, self.unreadable(source, f"textures[{texture_index}]", exc.message)
            pixels = fit_long_side(pixels, self.texture_size)
            self.textures[key] = (pixels * torch.tensor(factor, dtype=torch.float32)[:, None, None]).contiguous()
        return self.textures[key], None

    def image_pixels(self, source: Any, what: str) -> torch.Tensor:
        """An image of the document decoded (`UserError` naming the image file, or the glb and the image)."""
        image = self.item("images", source, what)
        label = f"images[{source}]"
        if image.uri is not None:
            if not isinstance(image.uri, str):
                raise self.fail(f"{label}.uri must be a string")
            if image.uri.startswith("data:"):
                return decode_image_bytes(self.read_uri(image.uri, label), name=f"{self.name} {label}",
                                          max_pixels=self.max_pixels)
            if "://" in image.uri or image.uri.startswith(("/", "\\")):
                raise self.fail(f"{label}: uri {image.uri!r} must be a path relative to the glTF file")
            return load_image(self.path.parent / urllib.parse.unquote(image.uri), max_pixels=self.max_pixels)
        if image.bufferView is not None:
            data, start, length, _ = self.buffer_view(image.bufferView, label)
            return decode_image_bytes(data[start:start + length], name=f"{self.name} {label}",
                                      max_pixels=self.max_pixels)
        raise self.fail(f"{label} has neither a uri nor a bufferView")

    def unreadable(self, source: Any, texture: str, reason: str) -> dict[str, str]:
        """The record of a baseColor image that could not be read: which image, its file, its format."""
        raw = self.raw_item("images", source) if is_int(source) and 0 <= source < len(self.raw.get("images") or []) \
            else {}
        uri, mime = raw.get("uri"), raw.get("mimeType")
        if isinstance(uri, str) and not uri.startswith("data:"):
            where = str(self.path.parent / urllib.parse.unquote(uri))
            extension = Path(urllib.parse.unquote(uri)).suffix.lstrip(".").lower() or "none"
        else:
            where = f"{self.name} images[{source}]"
            extension = mime.split("/")[-1].lower() if isinstance(mime, str) and "/" in mime else "unknown"
        if isinstance(mime, str) and "/" in mime and extension in ("none", "unknown"):
            extension = mime.split("/")[-1].lower()
        return {"file": where, "image": f"images[{source}]", "texture": texture, "extension": extension,
                "reason": reason}
