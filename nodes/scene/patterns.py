"""Deterministic procedural reference images for the demo room.

Each pattern is a function `(generator, size) -> [3, size, size]` sRGB image
in [0, 1] drawing all randomness from the given `torch.Generator` (no global
RNG), so the same seed gives the same bytes. The seed also jitters colours
and frequencies, so a different seed gives a visibly different reference of
the same kind.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Pattern = Callable[[torch.Generator, int], torch.Tensor]


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float32)


def _jitter(gen: torch.Generator, rgb: tuple[float, float, float], amount: float) -> torch.Tensor:
    """An sRGB colour with each channel moved by up to ±amount."""
    return (torch.tensor(rgb) + (2 * _rand(gen, 3) - 1) * amount).clamp(0, 1)


def value_noise(gen: torch.Generator, size: int, cells_y: int, cells_x: int | None = None) -> torch.Tensor:
    """Smooth noise `[size, size]` in [0, 1]: a random grid upsampled bicubically."""
    grid = _rand(gen, 1, 1, cells_y, cells_x or cells_y)
    up = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    return up.clamp(0, 1)


def fractal_noise(gen: torch.Generator, size: int, base_cells: int, octaves: int = 4) -> torch.Tensor:
    total = torch.zeros(size, size)
    weight, norm = 1.0, 0.0
    for octave in range(octaves):
        total += weight * value_noise(gen, size, base_cells * 2**octave)
        norm += weight
        weight *= 0.5
    return total / norm


def _coords(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Blend colours a, b `[3]` by a map t `[H, W]` -> `[3, H, W]`."""
    return a[:, None, None] * (1 - t) + b[:, None, None] * t


def wood_grain(gen: torch.Generator, size: int) -> torch.Tensor:
    """Oak-like planks: growth rings distorted by noise, fine streaks along the grain."""
    x, y = _coords(size)
    light = _jitter(gen, (0.66, 0.45, 0.25), 0.06)
    dark = _jitter(gen, (0.38, 0.22, 0.10), 0.04)
    ring_freq = 14.0 + 8.0 * float(_rand(gen, 1))
    warp = value_noise(gen, size, 3, 2) * 2.5 + value_noise(gen, size, 8, 4) * 0.4
    rings = torch.sin(2 * math.pi * (y * ring_freq + warp + 0.15 * torch.sin(2 * math.pi * x))) * 0.5 + 0.5
    rings = rings**3
    streaks = value_noise(gen, size, 96, 3)
    t = (0.65 * rings + 0.35 * streaks).clamp(0, 1)
    planks = 4
    seam = ((y * planks) % 1.0 < 0.012).float()
    image = _mix(light, dark, t)
    return (image * (1 - 0.5 * seam)).clamp(0, 1)


def fabric_weave(gen: torch.Generator, size: int) -> torch.Tensor:
    """Plain weave: alternating over/under threads with per-thread tone variation."""
    x, y = _coords(size)
    base = _jitter(gen, (0.12, 0.36, 0.38), 0.06)
    threads = int(40 + 16 * float(_rand(gen, 1)))
    u, v = x * threads, y * threads
    over = ((torch.floor(u) + torch.floor(v)) % 2 == 0).float()
    across = torch.cos(math.pi * ((v % 1.0) - 0.5)) ** 0.6  # thread cross-section shading
    along = torch.cos(math.pi * ((u % 1.0) - 0.5)) ** 0.6
    shade = over * across + (1 - over) * along
    warp_tone = _rand(gen, threads)[torch.floor(u).long().clamp(max=threads - 1)]
    weft_tone = _rand(gen, threads)[torch.floor(v).long().clamp(max=threads - 1)]
    tone = over * weft_tone + (1 - over) * warp_tone
    fuzz = value_noise(gen, size, 64)
    lum = 0.55 + 0.35 * shade + 0.1 * (tone - 0.5) + 0.08 * (fuzz - 0.5)
    return (base[:, None, None] * lum * 1.4).clamp(0, 1)


def floor_tiles(gen: torch.Generator, size: int) -> torch.Tensor:
    """Ceramic tiles with grout lines, per-tile colour jitter and speckles."""
    x, y = _coords(size)
    tiles = 4
    tile_x, tile_y = torch.floor(x * tiles).long(), torch.floor(y * tiles).long()
    base = _jitter(gen, (0.84, 0.80, 0.72), 0.04)
    per_tile = (_rand(gen, tiles, tiles) - 0.5) * 0.12
    tile_tone = per_tile[tile_y.clamp(max=tiles - 1), tile_x.clamp(max=tiles - 1)]
    fx, fy = (x * tiles) % 1.0, (y * tiles) % 1.0
    grout_width = 0.035
    grout = ((fx < grout_width) | (fx > 1 - grout_width) | (fy < grout_width) | (fy > 1 - grout_width)).float()
    speckle = (value_noise(gen, size, 128) > 0.8).float() * 0.08
    cloud = fractal_noise(gen, size, 4, 3) - 0.5
    image = base[:, None, None] * (1 + tile_tone + 0.1 * cloud - speckle)
    grout_colour = torch.tensor([0.45, 0.43, 0.40])[:, None, None]
    return (image * (1 - grout) + grout_colour * grout).clamp(0, 1)


def wallpaper(gen: torch.Generator, size: int) -> torch.Tensor:
    """Vertical stripes of two colours with a repeating diamond motif."""
    x, y = _coords(size)
    a = _jitter(gen, (0.55, 0.66, 0.52), 0.05)
    b = _jitter(gen, (0.90, 0.88, 0.78), 0.03)
    stripes = int(6 + 4 * float(_rand(gen, 1)))
    sx = (x * stripes) % 1.0
    stripe = (sx < 0.5).float()
    my = (y * stripes * 2) % 1.0
    diamond = ((torch.abs(sx - 0.75) * 2 + torch.abs(my - 0.5)) < 0.22).float()
    image = _mix(b, a, stripe)
    motif = a * 0.75
    image = image * (1 - diamond) + motif[:, None, None] * diamond
    paper = fractal_noise(gen, size, 16, 2) - 0.5
    return (image * (1 + 0.05 * paper)).clamp(0, 1)


def painted_plaster(gen: torch.Generator, size: int) -> torch.Tensor:
    """Warm flat paint over plaster: low-frequency roller marks and fine stipple."""
    base = _jitter(gen, (0.80, 0.52, 0.36), 0.05)
    roller = fractal_noise(gen, size, 3, 3) - 0.5
    stipple = value_noise(gen, size, 160) - 0.5
    return (base[:, None, None] * (1 + 0.08 * roller + 0.06 * stipple)).clamp(0, 1)


def rug_pattern(gen: torch.Generator, size: int) -> torch.Tensor:
    """Kilim-like rug: border bands and a diamond lattice in red, navy and cream, on a woolly texture."""
    x, y = _coords(size)
    red = _jitter(gen, (0.62, 0.12, 0.10), 0.05)
    navy = _jitter(gen, (0.10, 0.14, 0.35), 0.04)
    cream = _jitter(gen, (0.88, 0.80, 0.62), 0.03)
    edge = torch.minimum(torch.minimum(x, 1 - x), torch.minimum(y, 1 - y))
    border = (edge < 0.08).float()
    inner_band = ((edge > 0.1) & (edge < 0.13)).float()
    cells = int(4 + 2 * float(_rand(gen, 1)))
    dx, dy = (x * cells) % 1.0 - 0.5, (y * cells) % 1.0 - 0.5
    lattice = torch.abs(dx) + torch.abs(dy)
    diamond = (lattice < 0.3).float()
    ring = ((lattice > 0.38) & (lattice < 0.45)).float()
    image = _mix(red, navy, diamond)
    image = image * (1 - ring) + cream[:, None, None] * ring
    image = image * (1 - inner_band) + cream[:, None, None] * inner_band
    image = image * (1 - border) + navy[:, None, None] * border
    wool = value_noise(gen, size, 100) - 0.5
    return (image * (1 + 0.15 * wool)).clamp(0, 1)


def brushed_metal(gen: torch.Generator, size: int) -> torch.Tensor:
    """Brushed steel: cool grey with fine anisotropic streaks along x."""
    base = _jitter(gen, (0.62, 0.64, 0.67), 0.03)
    streaks = value_noise(gen, size, 160, 2) - 0.5
    fine = value_noise(gen, size, 256, 6) - 0.5
    sheen = value_noise(gen, size, 2) - 0.5
    lum = 1 + 0.18 * streaks + 0.08 * fine + 0.1 * sheen
    return (base[:, None, None] * lum).clamp(0, 1)


PATTERNS: dict[str, Pattern] = {
    "wood_grain": wood_grain,
    "fabric_weave": fabric_weave,
    "floor_tiles": floor_tiles,
    "wallpaper": wallpaper,
    "painted_plaster": painted_plaster,
    "rug_pattern": rug_pattern,
    "brushed_metal": brushed_metal,
}
