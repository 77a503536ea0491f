"""Rendering a material swatch (albedo, height, roughness, metallic) under one light, seen from above.

The swatch's 2D space: `[C, H, W]` maps, row 0 at the top, `pixel_size` metres per texel. Directions
are in the swatch's tangent frame: x to the image's right, y to its top, z out of the surface (towards
the camera, which looks straight down, orthographically). Tangent-space normals follow glTF (+Y up).

The shading model is the project's GGX (`nodes.brdf.ggx.shade`): Lambert + Cook-Torrance GGX under one
directional light whose irradiance varies smoothly over the swatch (a near lamp's fall-off, a
vignette: `Light.irradiance`), plus a uniform, cast-shadow-free sky (`ambient`, diffuse only). There
are no cast shadows: a photo's cast shadows are what the photometric stereo trims as outliers and what
the one-photo fit absorbs in its albedo.

The same renderer makes the test photos (from known maps) and is the re-rendering loss of the fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nodes.brdf.ggx import shade

LUMA = (0.2126, 0.7152, 0.0722)
FALLOFF_TERMS = 5  # log-irradiance polynomial: x, y, x², xy, y² (x, y in [-1, 1] over the swatch)


@dataclass(frozen=True)
class Light:
    """One light of a photo. `azimuth`: degrees, 0 = from the image's right, 90 = from its top;
    `elevation`: degrees above the swatch plane; `falloff`: coefficients of the log-irradiance polynomial
    (`FALLOFF_TERMS`); `intensity`: irradiance at the swatch's centre (a white Lambert surface facing
    the light shows this value); `ambient`: the sky's irradiance, a fraction of `intensity`."""

    azimuth: float
    elevation: float = 45.0
    falloff: tuple[float, ...] = field(default=(0.0,) * FALLOFF_TERMS)
    intensity: float = 1.0
    ambient: float = 0.0

    def direction(self) -> torch.Tensor:
        return light_direction(torch.tensor(self.azimuth), torch.tensor(self.elevation))

    def irradiance(self, height: int, width: int) -> torch.Tensor:
        """`[H, W]` irradiance multiplier `intensity · exp(poly(x, y))`."""
        coeffs = torch.tensor(self.falloff, dtype=torch.float32)
        return self.intensity * torch.exp(torch.einsum("k,khw->hw", coeffs, falloff_basis(height, width)))


def light_direction(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor) -> torch.Tensor:
    """Unit vector `[..., 3]` towards the light (differentiable)."""
    phi, theta = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack([torch.cos(theta) * torch.cos(phi), torch.cos(theta) * torch.sin(phi), torch.sin(theta)], -1)


def falloff_basis(height: int, width: int) -> torch.Tensor:
    """`[FALLOFF_TERMS, H, W]`: x, y, x², xy, y² with x right and y up, both in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(1.0, -1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
    return torch.stack([x, y, x * x, x * y, y * y])


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """`[3, H, W]` linear RGB -> `[1, H, W]` Rec. 709 luminance."""
    return (rgb * torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device)[:, None, None]).sum(0, keepdim=True)


def height_gradient(height: torch.Tensor, pixel_size: float,
                    periodic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Slopes `(dh/dx, dh/dy)` `[1, H, W]` (x right, y up) by central differences; the border repeats its
    neighbour (a photo) or wraps (a tileable map)."""
    if periodic:
        gx = (torch.roll(height, -1, -1) - torch.roll(height, 1, -1)) / (2 * pixel_size)
        g_row = (torch.roll(height, -1, -2) - torch.roll(height, 1, -2)) / (2 * pixel_size)
    else:
        padded = F.pad(height[None], (1, 1, 1, 1), mode="replicate")[0]
        gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / (2 * pixel_size)
        g_row = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / (2 * pixel_size)
    return gx, -g_row  # rows go down the image, y goes up


def height_to_normal(height: torch.Tensor, pixel_size: float, periodic: bool = False) -> torch.Tensor:
    """`[1, H, W]` height (metres) -> `[3, H, W]` unit tangent-space normals (+Y up)."""
    gx, gy = height_gradient(height, pixel_size, periodic)
    normal = torch.cat([-gx, -gy, torch.ones_like(gx)], 0)
    return normal / normal.norm(dim=0, keepdim=True)


def render_swatch(albedo: torch.Tensor, normal: torch.Tensor, roughness: torch.Tensor | float,
                  metallic: torch.Tensor | float, light: Light, irradiance: torch.Tensor | None = None,
                  direction: torch.Tensor | None = None) -> torch.Tensor:
    """The swatch `[3, H, W]` as a camera straight above sees it under `light` (module docstring).

    `irradiance` `[H, W]` and `direction` `[3]` override the light's own (the fits pass differentiable ones).
    """
    _, h, w = albedo.shape
    n = h * w
    rough = torch.as_tensor(roughness, dtype=albedo.dtype).expand(1, h, w).reshape(1, n).T
    metal = torch.as_tensor(metallic, dtype=albedo.dtype).expand(1, h, w).reshape(1, n).T
    alb = albedo.reshape(3, n).T
    nrm = normal.reshape(3, n).T
    direction = light.direction().to(albedo) if direction is None else direction
    irr = light.irradiance(h, w).to(albedo) if irradiance is None else irradiance
    view = torch.tensor([0.0, 0.0, 1.0], dtype=albedo.dtype).expand(n, 3)
    # `shade` takes irradiance at normal incidence; pi * E makes a white Lambert surface facing the light show E.
    radiance = (math.pi * irr.reshape(n, 1, 1)).expand(n, 1, 3)
    direct = shade(alb, rough, metal, nrm, view, direction[None, :], radiance)
    sky = alb * (1.0 - metal) * light.ambient * irr.reshape(n, 1)
    return (direct + sky).T.reshape(3, h, w)
