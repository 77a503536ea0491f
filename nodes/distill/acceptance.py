"""Issue 4's acceptance measure: distilled textures against two baselines.

For each instance, its renders (through its own views) are compared with its
reference by the patch sliced-Wasserstein distance, for
- the distilled texture,
- (a) a flat texture of the reference's mean colour,
- (b) the reference image stretched once over the instance's UV island bbox;
and the distilled renders are compared with every other instance's
reference for the binding accuracy. Used by the acceptance test, the figure
script (`docs/make_distill_figure.py`) and the report.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodes.types import Reference, Scene, TextureMap, Views

from .metrics import binding_accuracy, patch_sliced_wasserstein
from .texture_param import InstanceViews, select_instance_views


def render_texture(image: torch.Tensor, views: InstanceViews) -> torch.Tensor:
    """Renders `[B, 3, H, W]` of an atlas `[3, h, w]` through an instance's views (zero off the instance)."""
    from nodes.render.ops import sample_texture_map

    with torch.no_grad():
        out = sample_texture_map(image.float(), views.uv, boundary_mode="clamp").permute(0, 3, 1, 2)
    return out * views.mask


def tiled_baseline(reference: torch.Tensor, atlas_mask: torch.Tensor) -> torch.Tensor:
    """The reference stretched once over the bbox of the instance's UV island(s), its mean colour elsewhere."""
    size = atlas_mask.shape
    out = reference.mean((1, 2))[:, None, None].expand(3, *size).clone()
    rows = torch.nonzero(atlas_mask.any(1)).flatten()
    cols = torch.nonzero(atlas_mask.any(0)).flatten()
    if rows.numel() == 0:
        return out
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    out[:, y0:y1, x0:x1] = F.interpolate(reference[None].float(), size=(y1 - y0, x1 - x0), mode="area"
                                         if reference.shape[-1] >= x1 - x0 else "bilinear")[0]
    return out


@dataclass
class AcceptanceRow:
    instance: str
    distilled: float
    flat: float
    tiled: float
    nearest_other: float

    @property
    def passed(self) -> bool:
        return self.distilled < self.flat and self.distilled < self.tiled


def evaluate(scene: Scene, instances: Mapping[str, object], references: Mapping[str, Reference], views: Views,
             textures: Mapping[str, TextureMap], seed: int = 0) -> tuple[list[AcceptanceRow], float]:
    """Per-instance rows and the binding accuracy."""
    from nodes.render.uv_raster import uv_island_mask

    rows: list[AcceptanceRow] = []
    distances: dict[str, dict[str, float]] = {}
    for name, tex in textures.items():
        iv = select_instance_views(views, name)
        ref_images = [img.float() for img in references[name].images]
        renders = render_texture(tex.image, iv)
        distances[name] = {other: patch_sliced_wasserstein(renders, iv.mask, [i.float() for i in references[other].images],
                                                           seed=seed) for other in textures}
        instance = instances[name]
        atlas_mask = uv_island_mask(scene.uvs, scene.faces[instance.face_mask], tex.image.shape[-1])  # type: ignore[attr-defined]
        flat = ref_images[0].mean((1, 2))[:, None, None].expand(3, *atlas_mask.shape)
        tiled = tiled_baseline(ref_images[0], atlas_mask)
        rows.append(AcceptanceRow(
            instance=name,
            distilled=distances[name][name],
            flat=patch_sliced_wasserstein(render_texture(flat, iv), iv.mask, ref_images, seed=seed),
            tiled=patch_sliced_wasserstein(render_texture(tiled, iv), iv.mask, ref_images, seed=seed),
            nearest_other=min((d for o, d in distances[name].items() if o != name), default=float("nan")),
        ))
    return rows, binding_accuracy(distances)


def format_table(rows: list[AcceptanceRow], accuracy: float) -> str:
    lines = ["| instance | distilled | flat mean | tiled ref | nearest other ref | pass |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.instance} | {r.distilled:.4f} | {r.flat:.4f} | {r.tiled:.4f} | {r.nearest_other:.4f} | "
                     f"{'yes' if r.passed else 'NO'} |")
    lines.append(f"binding accuracy: {accuracy:.0%}")
    return "\n".join(lines)
