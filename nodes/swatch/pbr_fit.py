"""One photo of a swatch -> de-lit albedo, height, roughness (issue 21 item 1), and the re-rendering
refinement shared with the several-photo path (`nodes.swatch.photometric`).

One photo (`fit_one_photo`):
1. The light (`estimate_light`). Fall-off: the least-squares quadratic trend of the log luminance (a
   lamp's cone, a vignette). The rest, band-passed, is the shading `L ≈ -cot(elevation) ∂_u h` (the
   change of the height along the light's direction `u`, linearised) plus albedo detail. Azimuth: dark
   crevices are low (mortar, joints, cavities hold dirt and are occluded), and across a crevice the
   shading goes from bright to dark along the light, so the mean gradient of `L` over the darkest
   texels points away from the light; whitened by the structure tensor of that darkness (bricks have
   more horizontal joints than vertical ones, which would otherwise pull the estimate to an axis).
   Where the photo has no crevices (plaster bumps), the axis is the shading's dominant orientation
   (the structure tensor of `L`) and its sign the side the fall-off brightens towards (a lamp is
   nearer on its own side). Elevation: the shading's contrast over the class's typical relief slope
   (one photo cannot tell a steep relief under a high light from a shallow one under a low light, the
   bas-relief ambiguity; the class decides the scale).
2. An initial height: the Wiener solution of `L = -κ ∂_u h` with a gradient penalty (FFT, mirrored
   borders), i.e. the least height whose shading explains the photo's detail along the light.
3. Refinement (`refine`, Adam on the re-rendering loss): Lambert + GGX (`nodes.swatch.shading`) of
   exp(log albedo), the height's normals and a coarse roughness grid under the estimated light must
   reproduce the photo (log domain), with priors: albedo chromaticity is piecewise smooth (TV), albedo
   luminance is mostly low-frequency (a weak high-pass penalty: what the light can explain goes into
   the height), the height is smooth (its Laplacian), roughness is smooth (coarse grid) and held in its
   class's range, metallic is the class's.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import kornia
import torch
import torch.nn.functional as F

from nodes.brdf.materials import material_prior

from .shading import FALLOFF_TERMS, Light, falloff_basis, height_to_normal, light_direction, luminance, render_swatch

# Typical RMS slope of a class's relief (rise over run): the scale one photo cannot observe.
RELIEF_SLOPE = {"stone": 0.35, "fabric": 0.25, "leather": 0.12, "ceramic": 0.25, "generic": 0.2, "wood": 0.08,
                "paint": 0.08, "paper": 0.05, "plastic": 0.05, "metal": 0.05, "glass": 0.02}
DARK_QUANTILE = 0.2
PASS_FRACTION = 0.125  # band-pass: remove what is smoother than this fraction of the swatch
MIN_ELEVATION, MAX_ELEVATION = 12.0, 75.0
SKY = 0.1  # assumed sky fraction of a photo's light (a room's indirect light)


@dataclass(frozen=True)
class FitWeights:
    """Prior weights of `refine` (tuned on `tests/helpers/pbr_swatches.TUNING`)."""

    chroma_tv: float = 0.02
    albedo_highpass: float = 0.15
    height_laplacian: float = 0.02
    roughness_tv: float = 0.01
    roughness_range: float = 10.0
    steps: int = 120
    coarse: int = 2  # texels per roughness cell: roughness is smoother than albedo
    lr: float = 0.03


@dataclass
class FitResult:
    albedo: torch.Tensor  # [3, H, W] linear
    height: torch.Tensor  # [1, H, W] metres, mean 0
    roughness: torch.Tensor  # [1, H, W]
    metallic: float
    lights: list[Light]
    info: dict = field(default_factory=dict)

    def normal(self, pixel_size: float) -> torch.Tensor:
        return height_to_normal(self.height, pixel_size)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of `[C, H, W]` (reflected borders)."""
    k = 2 * int(math.ceil(2.5 * sigma)) + 1
    k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1)
    return kornia.filters.gaussian_blur2d(x[None], (k, k), (sigma, sigma), border_type="reflect")[0]


def log_trend(log_lum: torch.Tensor) -> torch.Tensor:
    """Least-squares fit of `[1, H, W]` by the fall-off polynomial (no constant): `[FALLOFF_TERMS]`."""
    _, h, w = log_lum.shape
    basis = falloff_basis(h, w).reshape(FALLOFF_TERMS, -1).T.double()
    basis = basis - basis.mean(0)
    y = log_lum.reshape(-1).double()
    return torch.linalg.lstsq(basis, (y - y.mean())[:, None]).solution[:, 0].float()


def band_pass(log_lum: torch.Tensor) -> torch.Tensor:
    """The detail of a log luminance `[1, H, W]`: minus its blur at `PASS_FRACTION`, lightly denoised."""
    sigma = max(1.0, PASS_FRACTION * min(log_lum.shape[-2:]))
    return _blur(log_lum - _blur(log_lum, sigma), 0.7)


def _gradients(x: torch.Tensor) -> torch.Tensor:
    """`[2, H, W]`: d/dx (right), d/dy (up) by Sobel."""
    g = kornia.filters.spatial_gradient(x[None], normalized=True)[0, 0]  # [2, H, W]: d/dcol, d/drow
    return torch.stack([g[0], -g[1]])


def _azimuth_from_crevices(shading: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Unit (x, y) towards the light from the crevices' shading, and its z-score (0 = no evidence)."""
    dark = _blur(shading, 1.5)
    mask = dark <= torch.quantile(dark, DARK_QUANTILE)
    grad = _gradients(shading)[:, mask[0]]  # [2, M]
    mean = grad.mean(1)
    spread = grad.std(1).norm() / math.sqrt(max(grad.shape[1], 1))
    g_dark = _gradients(dark).reshape(2, -1)
    tensor = g_dark @ g_dark.T / g_dark.shape[1] + 1e-9 * torch.eye(2)
    direction = -torch.linalg.solve(tensor / torch.trace(tensor), mean)
    z = float(mean.norm() / spread.clamp_min(1e-12))
    return direction / direction.norm().clamp_min(1e-12), z


def _dominant_axis(shading: torch.Tensor) -> torch.Tensor:
    g = _gradients(shading).reshape(2, -1)
    _, vecs = torch.linalg.eigh(g @ g.T)
    return vecs[:, -1]


def estimate_light(photo: torch.Tensor, material: str = "generic") -> tuple[Light, dict]:
    """The light of one photo `[3, H, W]` (module docstring, step 1) and the evidence behind it."""
    log_lum = torch.log(luminance(photo).clamp_min(1e-4))
    coeffs = log_trend(log_lum)
    basis = falloff_basis(*photo.shape[-2:])
    flat = log_lum - torch.einsum("k,khw->hw", coeffs, basis)
    shading = band_pass(flat)
    direction, z = _azimuth_from_crevices(shading)
    source = "crevices"
    if z < 3.0:
        direction, source = _dominant_axis(shading), "orientation"
    trend = coeffs[:2]
    if trend.norm() > 0.03:  # a lamp brightens its own side: the fall-off decides the sign
        direction = direction * torch.sign((direction * trend).sum() + 1e-12)
        source += "+falloff"
    elif source == "orientation":
        direction = direction * torch.sign((direction * _azimuth_from_crevices(shading)[0]).sum() + 1e-12)
    azimuth = math.degrees(math.atan2(float(direction[1]), float(direction[0])))
    slope = RELIEF_SLOPE.get(material, 0.2)
    # Linearised: std(L) ≈ cot(elevation) · std(slope along the light) ≈ cot(e) · slope / sqrt(2).
    cot = float(shading.std()) / (slope / math.sqrt(2.0))
    elevation = min(MAX_ELEVATION, max(MIN_ELEVATION, math.degrees(math.atan2(1.0, cot))))
    # Light and albedo trade off freely: a light that shades a flat white swatch to ~1 keeps the albedo at
    # the photo's level (and clear of the clamp at 1).
    intensity = 1.0 / (math.sin(math.radians(elevation)) + SKY)
    light = Light(azimuth, elevation, tuple(float(c) for c in coeffs), intensity=intensity, ambient=SKY)
    return light, {"azimuth_source": source, "azimuth_z": z, "falloff": [float(c) for c in coeffs]}


def directional_height(shading: torch.Tensor, light: Light, pixel_size: float, smooth: float = 0.15) -> torch.Tensor:
    """Height `[1, H, W]` (metres) minimising `|L + κ ∂_u h|² + smooth |∇h|²` (slopes per texel), mirrored
    borders so a photo's edges do not wrap."""
    _, h, w = shading.shape
    big = torch.cat([shading, shading.flip(-1)], -1)
    big = torch.cat([big, big.flip(-2)], -2)[0].double()
    kr = (torch.fft.fftfreq(2 * h, dtype=torch.float64) * 2 * math.pi)[:, None]
    kc = (torch.fft.fftfreq(2 * w, dtype=torch.float64) * 2 * math.pi)[None, :]
    phi = math.radians(light.azimuth)
    kappa = 1.0 / math.tan(math.radians(light.elevation))
    # u in (col, row): (cos φ, -sin φ); L = -κ ∂_u h  =>  ĥ = iκ k_u L̂ / (κ² k_u² + λ|k|²) .
    k_u = torch.sin(kc) * math.cos(phi) - torch.sin(kr) * math.sin(phi)
    k2 = torch.sin(kc) ** 2 + torch.sin(kr) ** 2
    hat = 1j * kappa * k_u * torch.fft.fft2(big) / (kappa**2 * k_u**2 + smooth * k2 + 1e-9)
    hat[0, 0] = 0.0
    out = torch.fft.ifft2(hat).real[:h, :w].float()
    return ((out - out.mean()) * pixel_size)[None]


class _Variables(torch.nn.Module):
    """The fitted maps: log albedo, height in texels, roughness logits on a coarse grid, per-photo fall-off."""

    def __init__(self, albedo: torch.Tensor, height_texels: torch.Tensor, roughness: float, lights: Sequence[Light],
                 coarse: int) -> None:
        super().__init__()
        self.log_albedo = torch.nn.Parameter(torch.log(albedo.clamp(1e-3, 1.0)))
        self.height = torch.nn.Parameter(height_texels.clone())
        _, h, w = albedo.shape
        grid = (1, max(1, h // coarse), max(1, w // coarse))
        r = min(max(roughness, 0.02), 0.98)
        self.rough_logit = torch.nn.Parameter(torch.full(grid, math.log(r / (1 - r))))
        self.falloff = torch.nn.Parameter(torch.tensor([light.falloff for light in lights], dtype=torch.float32))
        self.log_gain = torch.nn.Parameter(torch.tensor([math.log(light.intensity) for light in lights]))
        # The light's strength against the albedo's scale: the diffuse term sees only their product, the
        # (albedo-free) specular lobe sees the light alone.
        self.exposure = torch.nn.Parameter(torch.zeros(()))

    def roughness(self, shape: tuple[int, int]) -> torch.Tensor:
        up = F.interpolate(self.rough_logit[None], size=shape, mode="bilinear", align_corners=False)[0]
        return torch.sigmoid(up)


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    return kornia.filters.laplacian(x[None], 3, border_type="replicate")[0]


def _low_pass(x: torch.Tensor) -> torch.Tensor:
    """A cheap low-pass at about `PASS_FRACTION` of the swatch: area-downsampled, bilinear back."""
    _, h, w = x.shape
    small = F.adaptive_avg_pool2d(x[None], (max(1, round(1 / PASS_FRACTION)),) * 2)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


def _prior_loss(v: _Variables, rough: torch.Tensor, material: str, w: FitWeights, one_photo: bool) -> torch.Tensor:
    prior = material_prior(material)
    log_lum = torch.log(luminance(torch.exp(v.log_albedo)))
    chroma = v.log_albedo - log_lum
    loss = w.chroma_tv * _tv(chroma) + w.height_laplacian * _laplacian(v.height).pow(2).mean()
    if one_photo:  # several photos constrain the albedo's detail themselves
        loss = loss + w.albedo_highpass * (log_lum - _low_pass(log_lum.detach())).pow(2).mean()
    lo, hi = prior.roughness
    outside = (F.relu(lo - rough) + F.relu(rough - hi)).pow(2).mean()
    loss = loss + w.roughness_tv * _tv(rough) + w.roughness_range * outside
    return loss


def refine(photos: Sequence[torch.Tensor], lights: Sequence[Light], albedo: torch.Tensor, height: torch.Tensor,
           pixel_size: float, material: str, weights: FitWeights | None = None, roughness: float | None = None,
           seed: int = 0, free: tuple[str, ...] = ("albedo", "height", "roughness"),
           free_lights: tuple[str, ...] = ()) -> FitResult:
    """Adam on the re-rendering loss over albedo, height, roughness (and each photo's fall-off and gain
    when asked) from the given start (module docstring, step 3). `free` names the maps that
    move ("albedo", "height", "roughness"), `free_lights` the light parameters ("falloff", "log_gain", "exposure")."""
    torch.manual_seed(seed)
    w = weights or FitWeights()
    prior = material_prior(material)
    metallic = prior.metallic_typical
    v = _Variables(albedo, height / pixel_size, prior.roughness_typical if roughness is None else roughness,
                   lights, coarse=w.coarse)
    one = len(photos) == 1
    chosen = {"albedo": v.log_albedo, "height": v.height, "roughness": v.rough_logit}
    params = [chosen[name] for name in free] + [getattr(v, name) for name in free_lights]
    opt = torch.optim.Adam(params, lr=w.lr)
    targets = [torch.log(p.clamp_min(0.0) + 0.01) for p in photos]
    dirs = [light_direction(torch.tensor(float(lt.azimuth)), torch.tensor(float(lt.elevation))) for lt in lights]
    _, h, wd = albedo.shape
    basis = falloff_basis(h, wd)
    loss = torch.zeros(())
    for _ in range(w.steps):
        opt.zero_grad()
        rough = v.roughness((h, wd))
        normal = height_to_normal(v.height, 1.0)
        data = 0.0
        for k, (target, light) in enumerate(zip(targets, lights)):
            irr = torch.exp(v.log_gain[k] + v.exposure + torch.einsum("k,khw->hw", v.falloff[k], basis))
            image = render_swatch(torch.exp(v.log_albedo - v.exposure), normal, rough, metallic, light, irr, dirs[k])
            data = data + (torch.log(image + 0.01) - target).pow(2).mean()
        loss = data / len(photos) + _prior_loss(v, rough, material, w, one)
        loss.backward()
        opt.step()
    with torch.no_grad():
        fitted = [replace(lt, falloff=tuple(float(c) for c in v.falloff[k]), intensity=float(torch.exp(v.log_gain[k])))
                  for k, lt in enumerate(lights)]
        out_h = v.height.detach() * pixel_size
        return FitResult(torch.exp(v.log_albedo).detach().clamp(0, 1), out_h - out_h.mean(),
                         v.roughness((h, wd)).detach(), metallic, fitted, {"loss": float(loss)})


def fit_one_photo(photo: torch.Tensor, size: float, material: str = "generic",
                  weights: FitWeights | None = None) -> FitResult:
    """Albedo (light removed), height and roughness from one photo `[3, H, W]` spanning `size` metres."""
    pixel = size / photo.shape[-1]
    light, evidence = estimate_light(photo, material)
    log_lum = torch.log(luminance(photo).clamp_min(1e-4))
    flat = log_lum - torch.einsum("k,khw->hw", torch.tensor(light.falloff), falloff_basis(*photo.shape[-2:]))
    height = directional_height(band_pass(flat), light, pixel)
    normal = height_to_normal(height, pixel)
    shading = render_swatch(torch.ones_like(photo), normal, material_prior(material).roughness_typical, 0.0, light)
    albedo = (photo / luminance(shading).clamp_min(1e-3)).clamp(1e-3, 1.0)
    result = refine([photo], [light], albedo, height, pixel, material, weights)
    # Albedo is defined up to the light's intensity: keep the photo's mean luminance (what the photo as
    # albedo would give), so swapping a photo for its fit keeps the scene's exposure.
    gain = luminance(photo).mean() / luminance(result.albedo).mean().clamp_min(1e-6)
    result.albedo = (result.albedo * gain).clamp(0.0, 1.0)
    result.info.update(evidence, light={"azimuth": light.azimuth, "elevation": light.elevation})
    return result

