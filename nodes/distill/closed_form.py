"""The closed-form patch prior: the exact denoiser of an empirical patch distribution.

For a noisy image `x_t = a_t x + s_t ε` every patch `q` of `x_t` is denoised to
the posterior mean under the empirical distribution of a patch bank `{p_i}`:

    x̂_0(q) = Σ_i softmax_i(-||q - a_t p_i||² / 2 s_t²) p_i

(the exact minimum-MSE denoiser when the data are exactly the bank's patches).
Overlapping patch estimates are averaged per pixel and `ε̂ = (x_t - a_t x̂_0) / s_t`.

Distances are computed as matmuls: `||q - a p||² = ||q||² - 2a q·p + a²||p||²`
and the `||q||²` term is constant per query so it drops out of the softmax.
Patches that straddle the instance's mask use a masked distance (only the
instance's pixels count), which costs one more matmul; they are a minority.
Queries are processed in chunks so memory is `chunk × bank` floats.

Coarse-to-fine: the prior holds a bank per level of a kornia Gaussian pyramid
of the references (and their flips). A noise level `t` picks a pyramid level
(high noise = coarse level, where a patch spans large structure); the noisy
sample is reduced with the same `pyrdown`, whose effect on the i.i.d. noise's
standard deviation is accounted for exactly (the kernel's L2 norm), and the
level's x̂_0 is upsampled back to full resolution.

Sample space: `encode` maps linear RGB in [0, 1] to [-1, 1] (the usual
pixel-diffusion convention); noise coefficients are the cosine
variance-preserving schedule `a_t = cos(πt/2)`, `s_t = sin(πt/2)`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from nodes.components.priors import SCORE_PRIORS, EpsMode, PriorBatch, ScorePrior, ScorePriorConfig, refuse_domain

# L2 norm of kornia's 5x5 pyrdown kernel ([1, 4, 6, 4, 1] / 16 outer itself):
# i.i.d. noise of std s has std s * PYRDOWN_NOISE_GAIN after one pyrdown.
PYRDOWN_NOISE_GAIN = (1 + 16 + 36 + 16 + 1) / 256.0


def cosine_noise_coeffs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, s_t) of the cosine VP schedule, each `[B, 1, 1, 1]`."""
    t = t.reshape(-1, 1, 1, 1).to(torch.float32)
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


class PixelSpaceCosine:
    """The sample space of both closed-form priors: linear RGB [0, 1] <-> [-1, 1], cosine VP schedule."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return (samples + 1.0) * 0.5

    def noise_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cosine_noise_coeffs(t)


def pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Gaussian pyramid (kornia pyrdown), level 0 = the input."""
    out = [images]
    for _ in range(levels - 1):
        out.append(kornia.geometry.transform.pyrdown(out[-1], border_type="reflect", align_corners=False))
    return out


def extract_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """`[B, C, H, W]` -> `[B, L, C*p*p]` patches on a stride grid (row-major)."""
    cols = F.unfold(images, kernel_size=patch_size, stride=stride)
    return cols.transpose(1, 2)


@dataclass(frozen=True)
class PatchBank:
    """Flattened patches `[N, D]` (prior space) and their squared norms."""

    patches: torch.Tensor
    sq_norms: torch.Tensor
    patch_size: int

    @property
    def size(self) -> int:
        return int(self.patches.shape[0])

    @staticmethod
    def from_patches(patches: torch.Tensor, patch_size: int) -> PatchBank:
        patches = patches.contiguous()
        return PatchBank(patches, (patches * patches).sum(1), patch_size)


def with_flips(image: torch.Tensor) -> list[torch.Tensor]:
    """An image `[C, H, W]` and its horizontal, vertical and double flips."""
    return [image, image.flip(-1), image.flip(-2), image.flip(-1, -2)]


def subsample_rows(rows: torch.Tensor, max_rows: int, generator: torch.Generator | None) -> torch.Tensor:
    """At most `max_rows` rows, drawn without replacement (deterministic for a generator)."""
    if rows.shape[0] <= max_rows:
        return rows
    index = torch.randperm(rows.shape[0], generator=generator)[:max_rows]
    return rows[index.sort().values]


def build_banks(
    images: Sequence[torch.Tensor],
    patch_size: int,
    levels: int,
    max_patches: int,
    generator: torch.Generator | None,
    flips: bool = True,
    stride: int = 1,
) -> list[PatchBank]:
    """One bank per pyramid level from images `[3, H, W]` in prior space (and their flips)."""
    per_level: list[list[torch.Tensor]] = [[] for _ in range(levels)]
    for image in images:
        variants = with_flips(image) if flips else [image]
        for variant in variants:
            for level, reduced in enumerate(pyramid(variant[None].float(), levels)):
                if min(reduced.shape[-2:]) < patch_size:
                    continue
                per_level[level].append(extract_patches(reduced, patch_size, stride)[0])
    banks = []
    for level, chunks in enumerate(per_level):
        if not chunks:  # the references are too small for this level: reuse the finer one
            banks.append(banks[-1] if banks else PatchBank.from_patches(torch.zeros(1, 3 * patch_size**2), patch_size))
            continue
        banks.append(PatchBank.from_patches(subsample_rows(torch.cat(chunks), max_patches, generator), patch_size))
        del level
    return banks


def denoise_queries(
    queries: torch.Tensor,
    query_weights: torch.Tensor | None,
    bank: PatchBank,
    a: float,
    s: float,
    chunk: int = 2048,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Posterior-mean patches `[Q, D]` for noisy patches `[Q, D]` under the bank.

    `query_weights` `[Q, D]` in {0, 1} marks which entries of each query count in
    the distance (None: all of them). `values` `[N, D']` (default: the bank's
    patches) are what the softmax weights average.
    """
    values = bank.patches if values is None else values
    out = queries.new_empty(queries.shape[0], values.shape[1])
    inv_two_var = 1.0 / (2.0 * s * s)
    patches_t = bank.patches.T  # [D, N]
    squares_t = (bank.patches * bank.patches).T if query_weights is not None else None
    for start in range(0, queries.shape[0], chunk):
        q = queries[start:start + chunk]
        if query_weights is None:
            # -||q - a p||² / 2s², dropping ||q||² (constant per query)
            logits = (q @ patches_t) * (2.0 * a * inv_two_var) - (a * a * inv_two_var) * bank.sq_norms
        else:
            m = query_weights[start:start + chunk]
            logits = ((m * q) @ patches_t) * (2.0 * a * inv_two_var) - (m @ squares_t) * (a * a * inv_two_var)
        out[start:start + chunk] = torch.softmax(logits, dim=1) @ values
    return out


def denoise_image(
    x_t: torch.Tensor,
    mask: torch.Tensor,
    bank: PatchBank,
    a: float,
    s: float,
    stride: int,
    offset: tuple[int, int] = (0, 0),
    chunk: int = 2048,
    values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂_0 of one noisy image `[C, H, W]` under the bank, only where `mask` `[H, W]` is set.

    Patches on a `stride` grid shifted by `offset`; patches with no masked pixel
    are skipped, patches partly masked use the masked distance. Returns
    (x̂_0 `[C, H, W]`, coverage `[H, W]` bool: pixels some patch estimated).
    With `values` `[N, C'*p*p]` the estimate has C' channels: the softmax average
    of `values` instead of the bank patches (the conditional super-resolution
    prior matches on (high, low) pairs and returns the high part).
    """
    p = bank.patch_size
    c, h, w = x_t.shape
    out_channels = c if values is None else values.shape[1] // (p * p)
    # Pad by a patch on every side (the padding is outside the mask, so it never counts in a
    # distance) so that, whatever the grid offset, every masked pixel lies in some patch.
    oy, ox = offset
    pad_top, pad_left = p - oy, p - ox
    padded = F.pad(x_t[None], (pad_left, p, pad_top, p))[0]
    padded_mask = F.pad(mask[None, None].to(x_t.dtype), (pad_left, p, pad_top, p))[0, 0]
    ph, pw = padded.shape[-2:]
    queries = extract_patches(padded[None], p, stride)[0]  # [L, C*p*p]
    pixel_cols = extract_patches(padded_mask[None, None], p, stride)[0]  # [L, p*p]
    coverage = pixel_cols.mean(1)
    full = coverage > 1 - 1e-6
    partial = (coverage > 0) & ~full
    estimates = queries.new_zeros(queries.shape[0], out_channels * p * p)
    used = torch.zeros(queries.shape[0], 1, dtype=x_t.dtype)
    if full.any():
        estimates[full] = denoise_queries(queries[full], None, bank, a, s, chunk, values)
        used[full] = 1
    if partial.any():
        estimates[partial] = denoise_queries(queries[partial], pixel_cols[partial].repeat(1, c), bank, a, s, chunk,
                                             values)
        used[partial] = 1
    # Average overlapping estimates: fold sums, divide by how many patches cover each pixel.
    summed = F.fold((estimates * used).T[None], (ph, pw), kernel_size=p, stride=stride)[0]
    counts = F.fold(used.expand(-1, estimates.shape[1]).T[None], (ph, pw), kernel_size=p, stride=stride)[0]
    summed = summed[:, pad_top:pad_top + h, pad_left:pad_left + w]
    counts = counts[:, pad_top:pad_top + h, pad_left:pad_left + w]
    coverage_full = counts[0] > 0
    # Pixels no patch estimated (outside the mask) keep x_t / a, i.e. ε̂ = 0 there.
    x0 = torch.where(coverage_full[None], summed / counts.clamp_min(1e-8), x_t[:out_channels] / max(a, 1e-8))
    return x0, coverage_full


class ClosedFormPrior(PixelSpaceCosine, ScorePrior):
    """`ScorePrior` over an instance's reference patches (DESIGN.md §4).

    - `cond`: the instance's own bank (its reference images and their flips);
    - `uncond`: the union of all instances' banks (for classifier-free guidance);
      when no guidance bank is given it is the instance's own bank, so guidance
      is a no-op (the caller should then use guidance_scale 1);
    - `predict_eps_phi` (VSD): the same denoiser over the current renders' own
      patches, refreshed by `update_phi` from the detached renders.
    """

    name = "closed_form"

    def __init__(
        self,
        references: Sequence[torch.Tensor],
        union_references: Sequence[torch.Tensor] | None = None,
        *,
        patch_size: int = 5,
        levels: int = 3,
        bank_size: int = 4096,
        stride: int = 2,
        t_range: tuple[float, float] = (0.02, 0.98),
        chunk: int = 2048,
        generator: torch.Generator | None = None,
        finest_only: bool = False,
    ) -> None:
        if patch_size < 1 or stride < 1 or stride > patch_size:
            raise ValueError("need 1 <= stride <= patch_size")
        self.patch_size, self.levels, self.bank_size = patch_size, levels, bank_size
        self.stride, self.chunk, self.t_range, self.finest_only = stride, chunk, t_range, finest_only
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        encoded = [self.encode(r[None].float())[0] for r in references]
        self.cond_banks = build_banks(encoded, patch_size, levels, bank_size, self.generator)
        if union_references:
            union = [self.encode(r[None].float())[0] for r in union_references]
            self.uncond_banks = build_banks(union, patch_size, levels, bank_size, self.generator)
        else:
            self.uncond_banks = self.cond_banks
        self.phi_banks: list[PatchBank] | None = None

    # ---- ScorePrior (encode, decode, noise_coeffs from PixelSpaceCosine) ----
    def level_for(self, t: float) -> int:
        """Pyramid level for a noise level: the top of `t_range` is the coarsest level."""
        if self.finest_only or self.levels == 1:
            return 0
        lo, hi = self.t_range
        frac = (t - lo) / max(hi - lo, 1e-6)
        return int(min(self.levels - 1, max(0, math.floor(frac * self.levels))))

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, mode: EpsMode) -> torch.Tensor:
        banks = self.cond_banks if mode == "cond" else self.uncond_banks
        return self._eps(x_t, t, batch, banks)

    def predict_eps_phi(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch) -> torch.Tensor:
        if self.phi_banks is None:
            raise RuntimeError("predict_eps_phi before update_phi: no bank of the current renders yet")
        return self._eps(x_t, t, batch, self.phi_banks)

    def update_phi(self, x0: torch.Tensor, batch: PriorBatch, generator: torch.Generator) -> float | None:
        """ε_φ's bank: patches of the current (detached) renders, on the instance's pixels only."""
        x0 = x0.detach()
        banks = []
        masks = batch.masks.to(x0.dtype)
        for level, (imgs, msk) in enumerate(zip(pyramid(x0, self.levels), pyramid(masks, self.levels))):
            if min(imgs.shape[-2:]) < self.patch_size:  # renders too small at this level: use the finer bank
                banks.append(banks[-1] if banks else self.cond_banks[level])
                continue
            patches = extract_patches(imgs, self.patch_size, 1).reshape(-1, imgs.shape[1] * self.patch_size**2)
            inside = extract_patches(msk, self.patch_size, 1).reshape(-1, self.patch_size**2).min(1).values > 0.99
            chosen = patches[inside]
            if chosen.shape[0] == 0:  # tiny instance: fall back to any patch touching it
                chosen = patches[extract_patches(msk, self.patch_size, 1).reshape(-1, self.patch_size**2).max(1).values > 0]
            if chosen.shape[0] == 0:
                chosen = banks[-1].patches if banks else self.cond_banks[level].patches
            banks.append(PatchBank.from_patches(subsample_rows(chosen, self.bank_size, generator), self.patch_size))
        self.phi_banks = banks
        return None

    # ---- internals ----
    def _eps(self, x_t: torch.Tensor, t: torch.Tensor, batch: PriorBatch, banks: list[PatchBank]) -> torch.Tensor:
        x0 = self.predict_x0(x_t, t, batch.masks, banks)
        a, s = self.noise_coeffs(t)
        return (x_t - a * x0) / s

    @torch.no_grad()
    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, masks: torch.Tensor, banks: list[PatchBank] | None = None,
        offset_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """x̂_0 `[B, C, H, W]` per view, at the pyramid level chosen by each view's t."""
        banks = banks if banks is not None else self.cond_banks
        gen = offset_generator if offset_generator is not None else self.generator
        a_all, s_all = self.noise_coeffs(t)
        out = torch.empty_like(x_t)
        for b in range(x_t.shape[0]):
            tb = float(t.reshape(-1)[b])
            level = self.level_for(tb)
            a, s = float(a_all[b]), float(s_all[b])
            xb, mb = x_t[b:b + 1], masks[b:b + 1].to(x_t.dtype)
            for _ in range(level):
                xb = kornia.geometry.transform.pyrdown(xb, border_type="reflect")
                mb = kornia.geometry.transform.pyrdown(mb, border_type="reflect")
            s_level = s * PYRDOWN_NOISE_GAIN**level
            offset = tuple(int(v) for v in torch.randint(0, self.stride, (2,), generator=gen)) if self.stride > 1 else (0, 0)
            x0, _ = denoise_image(xb[0], mb[0, 0] > 0.01, banks[level], a, s_level, self.stride, offset, self.chunk)
            if level:
                x0 = F.interpolate(x0[None], size=x_t.shape[-2:], mode="bilinear", align_corners=False)[0]
            out[b] = x0
        return out


@SCORE_PRIORS.register("closed_form")
def closed_form_prior(config: ScorePriorConfig) -> ClosedFormPrior:
    """The patch prior over the config's reference images (CPU; no weights, no domain shifting)."""
    refuse_domain(config, "closed_form")
    return ClosedFormPrior(
        list(config.images), None if config.guidance_images is None else list(config.guidance_images),
        patch_size=config.patch_size, levels=config.levels, bank_size=config.bank_size, stride=config.stride,
        t_range=config.t_range, generator=torch.Generator().manual_seed(config.seed), finest_only=config.finest_only,
    )
