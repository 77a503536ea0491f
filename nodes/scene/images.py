"""Decoding untrusted image files into linear-RGB tensors.

Every problem with the *data* (missing, unreadable, corrupt, not an image,
too many pixels) is a `UserError` naming the file; nothing else escapes.
Pixel limits are checked from the header before any pixel is decoded, so a
decompression bomb costs nothing.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from graphflow import UserError

DEFAULT_MAX_PIXELS = 64_000_000


def _to_unit_float(array: np.ndarray, mode: str) -> np.ndarray:
    """Integer or float pixel data of a PIL mode -> float32 in [0, 1]."""
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit PNGs open as I;16 or I (32-bit holding 0..65535).
        return np.clip(array.astype(np.float32) / 65535.0, 0.0, 1.0)
    if mode == "F":
        return np.clip(np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return array.astype(np.float32) / 255.0


def _pil_to_linear(image: Image.Image) -> torch.Tensor:
    """A decoded PIL image -> [3, H, W] linear RGB float32; alpha dropped, grey replicated."""
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _to_unit_float(np.asarray(image), mode)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        if mode != "RGB":
            # P, L, LA, RGBA, CMYK, 1, YCbCr... -> RGB; alpha is dropped, not composited.
            image = image.convert("RGBA" if mode in ("P", "PA") else mode).convert("RGB")
        rgb = _to_unit_float(np.asarray(image), "RGB")
    srgb = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return kornia.color.rgb_to_linear_rgb(srgb).contiguous()


def _decode(source: io.BytesIO | Path, name: str, max_pixels: int) -> torch.Tensor:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise UserError("the image has no pixels", file=name, hint="re-export the image")
                if width * height > max_pixels:
                    raise UserError(
                        f"the image is {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,}",
                        file=name,
                        hint="downscale the image or raise the node's max_pixels param",
                    )
                image.load()
                return _pil_to_linear(image)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(
            f"the image is too large to decode safely ({exc})", file=name,
            hint="downscale the image or raise the node's max_pixels param",
        ) from None
    except FileNotFoundError:
        raise UserError("the image file does not exist", file=name, hint="check the path") from None
    except IsADirectoryError:
        raise UserError("this is a directory, not an image file", file=name, hint="name an image file") from None
    except PermissionError:
        raise UserError("the image file is not readable (permission denied)", file=name,
                        hint="fix the file's permissions") from None
    except MemoryError:
        raise UserError("the image is too large to decode", file=name, hint="downscale the image") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt data; all are the file's fault
        raise UserError(
            f"not a readable image ({type(exc).__name__}: {exc})", file=name,
            hint="use a PNG or JPEG file and check that it is not truncated",
        ) from None


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image file as `[3, H, W]` linear RGB float32 in [0, 1].

    sRGB-encoded 8- and 16-bit, greyscale, palette and alpha images are
    accepted (alpha is dropped; EXIF orientation applied). Raises `UserError`
    naming the file when it is missing, not an image, corrupt or over
    `max_pixels`.
    """
    path = Path(path)
    return _decode(path, str(path), max_pixels)


def decode_image_bytes(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Like `load_image` for image bytes (embedded in a glb, a data URI); `name` is used in errors."""
    if not data:
        raise UserError("the embedded image is empty", file=name, hint="re-export the file")
    return _decode(io.BytesIO(data), name, max_pixels)


def _fit_side(image: torch.Tensor, side: int, max_side: int) -> torch.Tensor:
    """Downscale (antialiased bilinear) so that `side` (a length of the image) becomes at most `max_side`."""
    _, height, width = image.shape
    if side <= max_side:
        return image.contiguous()
    scale = max_side / side
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return resized.clamp(0.0, 1.0).contiguous()


def fit_short_side(image: torch.Tensor, max_short_side: int) -> torch.Tensor:
    """Downscale (antialiased bilinear) so the short side is at most `max_short_side`; never upscales."""
    return _fit_side(image, min(image.shape[1:]), max_short_side)


def fit_long_side(image: torch.Tensor, max_long_side: int) -> torch.Tensor:
    """Downscale (antialiased bilinear) so the long side is at most `max_long_side`; never upscales."""
    return _fit_side(image, max(image.shape[1:]), max_long_side)
