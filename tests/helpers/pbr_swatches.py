"""Test photos rendered from known material maps (issue 21 item 4). Not production code.

Each `KnownSwatch` holds true albedo / height / roughness / metallic maps at a real size; `photograph`
renders it with `nodes.swatch.shading.render_swatch` under given lights and adds 8-bit JPEG noise.

Materials: procedural height fields (bricks with mortar, stones, plaster bumps, roof tiles) with known
albedo and roughness, and crops of SheenChair's fabric albedo / normal (integrated to a height) and
wood roughness maps. `TUNING` are the materials the fits' constants were tuned on; `HELD_OUT` were only
measured.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image

from nodes.swatch.photometric import frankot_chellappa
from nodes.swatch.shading import Light, height_to_normal, render_swatch

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "SheenChair"
if not ASSETS.is_dir():  # a worktree: ../shared is /work/shared
    ASSETS = Path("/work/shared/assets/SheenChair")


@dataclass(frozen=True)
class KnownSwatch:
    name: str
    material: str
    albedo: torch.Tensor  # [3, H, W] linear
    height: torch.Tensor  # [1, H, W] metres, mean 0
    roughness: torch.Tensor  # [1, H, W]
    metallic: float
    size: float  # metres across the width

    @property
    def pixel_size(self) -> float:
        return self.size / self.albedo.shape[-1]

    def normal(self) -> torch.Tensor:
        return height_to_normal(self.height, self.pixel_size)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(math.ceil(3 * sigma)) + 1
    return kornia.filters.gaussian_blur2d(x[None], (k, k), (sigma, sigma), border_type="reflect")[0]


def _noise(gen: torch.Generator, n: int, sigma: float) -> torch.Tensor:
    field = _blur(torch.randn(1, n, n, generator=gen), sigma)
    return field / field.std().clamp_min(1e-8)


def _grid(n: int, size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric (x right, y down) coordinates of texel centres."""
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * size / n
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx, yy


def _finish(name: str, material: str, albedo: torch.Tensor, height: torch.Tensor, rough: torch.Tensor,
            size: float, metallic: float = 0.0) -> KnownSwatch:
    height = height - height.mean()
    return KnownSwatch(name, material, albedo.clamp(0.01, 1.0), height, rough.clamp(0.05, 1.0), metallic, size)


def bricks(n: int = 128, seed: int = 0, size: float = 0.5) -> KnownSwatch:
    """Running-bond bricks (215 x 65 mm, 10 mm mortar recessed 8 mm, bevelled), per-brick colour."""
    gen = torch.Generator().manual_seed(seed)
    xx, yy = _grid(n, size)
    bw, bh, mortar = 0.225, 0.075, 0.010
    row = torch.floor(yy / bh)
    shift = (row % 2) * bw / 2
    col = torch.floor((xx + shift) / bw)
    fx = (xx + shift) - col * bw
    fy = yy - row * bh
    edge = torch.minimum(torch.minimum(fx, bw - fx), torch.minimum(fy, bh - fy)) - mortar / 2
    face = (edge / 0.004).clamp(0.0, 1.0)  # 4 mm bevel
    ident = (row * 31 + col * 17) % 23 / 23.0
    height = -0.008 * (1 - face) + 0.0008 * _noise(gen, n, 1.5)[0] * face
    brick = torch.stack([0.32 + 0.12 * ident, 0.13 + 0.05 * ident, 0.08 + 0.02 * ident])
    albedo = brick * face + torch.tensor([0.42, 0.40, 0.37])[:, None, None] * (1 - face)
    albedo = albedo * (1 + 0.08 * _noise(gen, n, 2.0))
    rough = 0.55 + 0.15 * ident + 0.3 * (1 - face)
    return _finish("bricks", "stone", _blur(albedo, 0.6), _blur(height[None], 0.8), _blur(rough[None], 0.8), size)


def stones(n: int = 128, seed: int = 1, size: float = 0.6) -> KnownSwatch:
    """Domed field stones (jittered Voronoi cells) in deep joints."""
    gen = torch.Generator().manual_seed(seed)
    xx, yy = _grid(n, size)
    cells = 7
    centres = (torch.stack(torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij"), -1)
               .reshape(-1, 2).float() + 0.5 + 0.35 * (torch.rand(cells * cells, 2, generator=gen) - 0.5))
    centres = centres * size / cells
    d = torch.cdist(torch.stack([xx, yy], -1).reshape(-1, 2), centres)
    two = d.topk(2, largest=False).values
    border = (two[:, 1] - two[:, 0]).reshape(n, n) / 2  # distance to the cell's edge
    which = d.argmin(1).reshape(n, n)
    dome = (border / 0.03).clamp(0, 1)
    height = 0.012 * torch.sqrt(dome) + 0.001 * _noise(gen, n, 1.2)[0]
    tone = torch.rand(cells * cells, generator=gen)[which]
    albedo = torch.stack([0.30 + 0.2 * tone, 0.28 + 0.16 * tone, 0.25 + 0.12 * tone])
    joint = torch.tensor([0.18, 0.17, 0.16])[:, None, None]
    albedo = albedo * dome.sqrt() + joint * (1 - dome.sqrt())
    albedo = albedo * (1 + 0.1 * _noise(gen, n, 1.5))
    rough = 0.5 + 0.3 * torch.rand(cells * cells, generator=gen)[which] + 0.2 * (1 - dome)
    return _finish("stones", "stone", albedo, height[None], _blur(rough[None], 1.0), size)


def plaster(n: int = 128, seed: int = 2, size: float = 0.4) -> KnownSwatch:
    """Hand-trowelled plaster: soft bumps of two scales, a slightly mottled off-white."""
    gen = torch.Generator().manual_seed(seed)
    height = 0.0015 * _noise(gen, n, 2.0) + 0.002 * _noise(gen, n, 6.0)
    mottle = _noise(gen, n, 10.0)
    albedo = torch.tensor([0.72, 0.68, 0.60])[:, None, None] * (1 + 0.06 * mottle + 0.03 * _noise(gen, n, 1.0))
    rough = 0.75 + 0.15 * _noise(gen, n, 8.0)
    return _finish("plaster", "stone", albedo, height, rough, size)


def roof_tiles(n: int = 128, seed: int = 3, size: float = 0.6) -> KnownSwatch:
    """Overlapping clay roof tiles in rows: each tile rises towards its lower edge and is barrel-curved (class
    generic: the ceramic prior is for flat glazed tiles, whose relief is zero)."""
    gen = torch.Generator().manual_seed(seed)
    xx, yy = _grid(n, size)
    tw, th = 0.15, 0.12
    row = torch.floor(yy / th)
    shift = (row % 2) * tw / 2
    col = torch.floor((xx + shift) / tw)
    fx = ((xx + shift) - col * tw) / tw
    fy = (yy - row * th) / th
    height = 0.012 * fy + 0.006 * torch.sin(math.pi * fx)  # thicker towards the overlap, barrel across
    ident = ((row * 13 + col * 7) % 11) / 11.0
    albedo = torch.stack([0.45 + 0.15 * ident, 0.20 + 0.06 * ident, 0.12 + 0.02 * ident])
    albedo = albedo * (1 + 0.07 * _noise(gen, n, 1.5))
    rough = 0.35 + 0.45 * ident
    return _finish("roof_tiles", "generic", albedo, _blur(height[None], 0.8), _blur(rough[None], 0.7), size)


def _png(name: str) -> torch.Tensor:
    arr = np.asarray(Image.open(ASSETS / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def chair_fabric(n: int = 128, size: float = 0.15) -> KnownSwatch:
    """A crop of SheenChair's fabric albedo and normal (integrated to a height) with its wood roughness."""
    albedo = kornia.color.rgb_to_linear_rgb(_png("chair_fabric_albedo.png")[:, 96:96 + n, 160:160 + n])
    nrm = _png("chair_fabric_normal.png")[:, 192:192 + 2 * n, 320:320 + 2 * n] * 2 - 1
    nrm = torch.nn.functional.avg_pool2d(nrm[None], 2)[0]
    pixel = size / n
    gx, gy = -nrm[0] / nrm[2].clamp_min(0.2), -nrm[1] / nrm[2].clamp_min(0.2)
    height = frankot_chellappa(gx[None] * 2.0, gy[None] * 2.0, pixel)  # relief exaggerated 2x: a coarse weave
    rough = 0.45 + 0.5 * _png("chair_woodbrown_roughnessmetallic.png")[1:2, 200:200 + n, 40:40 + n]
    return _finish("chair_fabric", "fabric", albedo, height, _blur(rough, 2.0), size)


TUNING = ("bricks", "stones", "plaster")
HELD_OUT = ("roof_tiles", "chair_fabric")
MAKERS = {"bricks": bricks, "stones": stones, "plaster": plaster, "roof_tiles": roof_tiles,
          "chair_fabric": chair_fabric}


def known_swatch(name: str, n: int = 128) -> KnownSwatch:
    return MAKERS[name](n)


def jpeg(image: torch.Tensor, quality: int = 88) -> torch.Tensor:
    """Round trip a linear `[3, H, W]` image through 8-bit sRGB JPEG."""
    srgb = kornia.color.linear_rgb_to_rgb(image.clamp(0, 1))
    arr = (srgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255.0
    return kornia.color.rgb_to_linear_rgb(torch.from_numpy(back).permute(2, 0, 1).contiguous())


def raking(azimuth: float = 35.0, elevation: float = 28.0) -> Light:
    """One raking lamp: its fall-off brightens the side it stands on."""
    a = math.radians(azimuth)
    return Light(azimuth, elevation, (0.2 * math.cos(a), 0.2 * math.sin(a), -0.1, 0.03, -0.06), intensity=1.6,
                 ambient=0.12)


RAKING = raking()


def four_lights(elevation: float = 40.0) -> list[Light]:
    """Lit from the four sides (a tripod capture), each with its own fall-off."""
    out = []
    for i, az in enumerate((10.0, 100.0, 190.0, 280.0)):
        a = math.radians(az)
        out.append(Light(az, elevation, (0.12 * math.cos(a), 0.12 * math.sin(a), -0.06, 0.0, -0.06),
                         intensity=1.5, ambient=0.08 + 0.01 * i))
    return out


def photograph(swatch: KnownSwatch, light: Light, quality: int = 88) -> torch.Tensor:
    """The swatch rendered under `light`, clipped and JPEG-compressed."""
    image = render_swatch(swatch.albedo, swatch.normal(), swatch.roughness, swatch.metallic, light)
    return jpeg(image, quality)


def shading(swatch: KnownSwatch, light: Light) -> torch.Tensor:
    """`[1, H, W]` the luminance ratio render / albedo: the shading that made the photo."""
    image = render_swatch(swatch.albedo, swatch.normal(), swatch.roughness, swatch.metallic, light)
    from nodes.swatch.shading import luminance
    return luminance(image) / luminance(swatch.albedo).clamp_min(1e-4)
