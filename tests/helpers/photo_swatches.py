"""Photo-like test swatches (issue 25 "Acceptance"): what a user's phone picture of a material looks like.

Each swatch is a crop of a larger material (so it does not tile), photographed: a light fall-off across
the frame, sensor noise, then JPEG at quality 75, returned as linear RGB `[3, S, S]` like a bound reference.
Materials: procedural bricks (strong straight structure), irregular stone (Voronoi flags with grout),
plaster, roof tiles, and crops of the SheenChair textures in ../shared/assets (wood, fabric) tinted.

Two disjoint sets: `TUNING` (what the tiling method was developed on) and `HELD_OUT` (other materials and
seeds, never looked at while tuning). Deterministic: every random draw comes from the entry's seed.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image

ASSETS = Path(__file__).resolve().parents[3] / "shared" / "assets" / "SheenChair"  # ../shared beside the checkout


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise `[size, size]` in [0, 1] (bicubic upsampling of a random grid)."""
    grid = torch.from_numpy(rng.random((1, 1, cells + 3, cells + 3)).astype(np.float32))
    up = torch.nn.functional.interpolate(grid, size=(size + size * 3 // cells, size + size * 3 // cells),
                                         mode="bicubic", align_corners=False)[0, 0]
    return up[:size, :size].clamp(0, 1).numpy()


def bricks(rng: np.random.Generator, size: int, rows: int = 10) -> np.ndarray:
    """Running-bond bricks: per-brick red/orange tone and grain, light mortar joints (sRGB `[size, size, 3]`)."""
    y, x = np.mgrid[0:size, 0:size] / size
    brick_h = 1.0 / rows
    row = np.floor(y / brick_h).astype(int)
    xs = x + 0.5 * (row % 2) * 2 * brick_h  # bricks twice as long as high, offset every other row
    col = np.floor(xs / (2 * brick_h)).astype(int)
    fy, fx = (y / brick_h) % 1.0, (xs / (2 * brick_h)) % 1.0
    mortar = (fy < 0.12) | (fx < 0.06)
    ids = (row * 97 + col) % 4096
    tones = rng.uniform(0.75, 1.15, 4096)[ids]
    hue = rng.uniform(-0.06, 0.06, 4096)[ids]
    grain = 0.85 + 0.3 * _noise(rng, size, size // 6)
    base = np.stack([0.62 + hue, 0.28 + 0.5 * hue, 0.18 * np.ones_like(hue)], -1)
    image = base * (tones * grain)[..., None]
    mortar_colour = np.array([0.72, 0.70, 0.66]) * (0.9 + 0.2 * _noise(rng, size, size // 4))[..., None]
    return np.where(mortar[..., None], mortar_colour, image).clip(0, 1)


def stone(rng: np.random.Generator, size: int, stones: int = 40) -> np.ndarray:
    """Irregular flagstones: Voronoi cells of grey-brown tones with dark grout between them."""
    points = rng.random((stones, 2)) * size
    y, x = np.mgrid[0:size, 0:size]
    d = np.sqrt((x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2)
    order = np.sort(d, -1)
    cell = np.argmin(d, -1)
    grout = (order[..., 1] - order[..., 0]) < size * 0.012
    palette = np.array([[0.55, 0.52, 0.47], [0.48, 0.44, 0.38], [0.62, 0.58, 0.50], [0.42, 0.40, 0.39]])
    colour = palette[rng.integers(0, len(palette), stones)] * rng.uniform(0.85, 1.15, (stones, 1))
    speckle = 0.8 + 0.4 * _noise(rng, size, size // 5)
    image = colour[cell] * speckle[..., None]
    return np.where(grout[..., None], np.array([0.20, 0.19, 0.18]), image).clip(0, 1)


def plaster(rng: np.random.Generator, size: int) -> np.ndarray:
    """Warm plaster: low-frequency trowel marks and fine stipple."""
    base = np.array([0.82, 0.70, 0.55])
    lum = 1 + 0.10 * (_noise(rng, size, 5) - 0.5) + 0.08 * (_noise(rng, size, size // 3) - 0.5)
    return (base * lum[..., None]).clip(0, 1)


def roof_tiles(rng: np.random.Generator, size: int, rows: int = 8) -> np.ndarray:
    """Overlapping rounded clay tiles in staggered rows, each row's lower edge in shadow."""
    y, x = np.mgrid[0:size, 0:size] / size
    h = 1.0 / rows
    row = np.floor(y / h).astype(int)
    xs = x + 0.5 * (row % 2) * h
    fx, fy = (xs / h) % 1.0, (y / h) % 1.0
    col = np.floor(xs / h).astype(int)
    round_ = np.cos((fx - 0.5) * np.pi) ** 0.5
    shadow = np.clip((fy - 0.75) / 0.25, 0, 1)
    tone = rng.uniform(0.8, 1.15, 8192)[(row * 131 + col) % 8192]
    base = np.array([0.55, 0.25, 0.15])
    lum = tone * (0.6 + 0.4 * round_) * (1 - 0.6 * shadow) * (0.9 + 0.2 * _noise(rng, size, size // 5))
    return (base * lum[..., None]).clip(0, 1)


def chair_crop(rng: np.random.Generator, size: int, name: str, tint: tuple[float, float, float]) -> np.ndarray:
    """A SheenChair texture (sRGB) tinted, resized to `size` (the crop is taken by `photograph`)."""
    image = np.asarray(Image.open(ASSETS / name).convert("RGB").resize((size, size), Image.BICUBIC)) / 255.0
    return (image * np.array(tint) * 1.1).clip(0, 1)


def photograph(material: np.ndarray, crop: int, rng: np.random.Generator, falloff: float = 0.25,
               noise: float = 0.012, quality: int = 75) -> torch.Tensor:
    """A non-tileable `crop`² part of an sRGB material, lit unevenly, noisy, JPEG'd: linear RGB `[3, crop, crop]`."""
    size = material.shape[0]
    oy, ox = rng.integers(crop // 8, size - crop - crop // 8, 2)
    part = material[oy:oy + crop, ox:ox + crop]
    y, x = np.mgrid[0:crop, 0:crop] / crop
    cy, cx = rng.uniform(-0.3, 1.3, 2)  # the light's spot, maybe outside the frame
    light = 1 + falloff * (0.5 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / 1.4)
    part = (part * light[..., None] + rng.normal(0, noise, part.shape)).clip(0, 1)
    buffer = io.BytesIO()
    Image.fromarray((part * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).astype(np.float32) / 255.0
    srgb = torch.from_numpy(decoded).permute(2, 0, 1).contiguous()
    return kornia.color.rgb_to_linear_rgb(srgb).clamp(0, 1)


@dataclass(frozen=True)
class PhotoSwatch:
    name: str
    material: str  # the material class for refs
    seed: int

    def image(self, crop: int = 128) -> torch.Tensor:
        """The photographed crop, `crop` pixels square (linear RGB)."""
        rng = np.random.default_rng(self.seed)
        big = 2 * crop + crop // 2
        kind = self.name.split("_")[0]
        material = {
            "bricks": lambda: bricks(rng, big, rows=int(rng.integers(9, 13))),
            "stone": lambda: stone(rng, big, stones=int(rng.integers(30, 50))),
            "plaster": lambda: plaster(rng, big),
            "roof": lambda: roof_tiles(rng, big, rows=int(rng.integers(7, 10))),
            "wood": lambda: chair_crop(rng, big, "chair_wood_albedo.png", (0.85, 0.62, 0.42)),
            "fabric": lambda: chair_crop(rng, big, "chair_fabric_albedo.png", (0.45, 0.55, 0.80)),
        }[kind]()
        return photograph(material, crop, rng)


TUNING = (PhotoSwatch("bricks", "stone", 0), PhotoSwatch("stone", "stone", 0), PhotoSwatch("plaster", "paint", 0),
          PhotoSwatch("wood", "wood", 0))
HELD_OUT = (PhotoSwatch("bricks_b", "stone", 11), PhotoSwatch("stone_b", "stone", 12), PhotoSwatch("roof", "ceramic", 13),
            PhotoSwatch("fabric", "fabric", 14))


def floor_scene(width: float = 3.0):
    """A `width`² floor quad (one instance, 'floor', UVs over the unit square) and its instances."""
    from graphflow.testing import make_context
    from nodes.scene.demo_room import DemoInstance, Quad, instance_mesh
    from nodes.scene.loader import assemble_scene
    from nodes.scene.nodes import SegmentParts

    quad = Quad((-width / 2, 0.0, -width / 2), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), width, width, (0.0, 1.0, 0.0))
    scene = assemble_scene([instance_mesh(DemoInstance("floor", "stone", "floor", "", "", (quad,)))],
                           unwrap_mode="never")
    # UVs over the whole unit square (the packer leaves a margin): the atlas's density is then exactly
    # side / width, so a swatch at a power-of-two density lands texel for texel (tile boundaries on lines).
    uvs = torch.stack([(scene.positions[:, 0] + width / 2) / width, (scene.positions[:, 2] + width / 2) / width], 1)
    scene = dataclasses.replace(scene, uvs=uvs.float(), source_uvs=None)
    return scene, SegmentParts({}).run(make_context("segment"), scene)


def reference_of(swatch: PhotoSwatch, size: float = 0.75, crop: int = 128, repeat: str = "exact"):
    """The bound Reference a user would get for this photo (`tile` mode, `size` metres wide)."""
    from nodes.types import Reference

    extra = {"repeat": repeat} if "repeat" in Reference.__dataclass_fields__ else {}
    return Reference(images=(swatch.image(crop),), material=swatch.material, size=size, mode="tile", **extra)
