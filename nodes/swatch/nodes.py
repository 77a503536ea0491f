"""`swatch.material`: per reference, the photo turned into a material in the swatch's own 2D space.

Runs once per reference before projection, so every instance bound to the same reference shares the
cached result. Its steps are plain functions:
- `fit_reference` (issue 21, `nodes.swatch.fit`): albedo with the photo's light removed, height,
  roughness (metallic: the class's) from one photo or, with `lights:`, several photos;
- `make_tileable` (issue 25): in `tile` mode, the maps made seamless by one transform applied to all of
  them alike (a swatch that already tiles comes out unchanged);
- `vary_maps` (issue 25 item 4, `nodes.swatch.vary`): with `repeat: vary`, the tileable maps quilted into a
  tile of K x K swatches (metres K times the swatch's) that does not visibly repeat.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Node, Resources, UserError, register
from nodes.types import Reference, SwatchMaterial

from .fit import WORK_SIZE, fit_reference
from .tileable import TileSettings, make_tileable
from .vary import VarySettings, vary_maps


class MaterialParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fit: Literal["photo", "none"] = Field(
        "photo", description="photo: the references are photographs; their light is removed and height / "
        "roughness are fitted (issue 21; several photos with `lights:` by photometric stereo). none: the "
        "images are albedo already (procedural or painted swatches): no maps, except from `lights:` photos")
    work_size: int = Field(96, ge=16, le=1024, description="short side (texels) the material fits run at")
    roughness_from_photos: bool = Field(
        False, description="EXPERIMENTAL: per-texel roughness fitted from `lights:` photos (measured not yet "
        "better than the class's single value, bench/pbr_photo.py); false: the class prior decides")

    seamless: bool = Field(True, description="tile mode: make a photo that does not repeat seamlessly tileable "
                           "(trimmed to its texture's period, wrap seams hidden under min-error cuts); false: "
                           "the photo as bound, repeated as is")

    vary_periods: int = Field(4, ge=2, le=8, description="`repeat: vary` references: the quilted tile spans this "
                              "many swatches along each side (it repeats only every vary_periods swatches)")
    seed: int = Field(0, ge=0, description="`repeat: vary`: the draw of the quilted tile's offsets")

    def tile_settings(self) -> TileSettings:
        return TileSettings(enabled=self.seamless)


def material_from_reference(reference: Reference, settings: TileSettings, fit: str = "photo",
                            work_size: int = WORK_SIZE, roughness_from_photos: bool = False,
                            vary: VarySettings | None = None, seed: int = 0) -> SwatchMaterial:
    """The SwatchMaterial of one reference: fitted, then (tile mode) made tileable, every map alike, then
    (`repeat: vary`) quilted into a tile of `vary.periods` x `vary.periods` swatches, every map alike."""
    albedo, height, roughness, metallic, fitted = fit_reference(reference, work_size, photo=fit == "photo",
                                                                roughness_from_photos=roughness_from_photos)
    info: dict[str, Any] = {}
    size = float(reference.size)
    if reference.mode == "tile":
        width = int(albedo.shape[-1])
        maps = [m for m in (albedo, height, roughness) if m is not None]
        tiled, info = make_tileable(torch.cat(maps), settings)
        albedo, rest = tiled[:3], tiled[3:]
        if height is not None:
            height, rest = rest[:1], rest[1:]
        if roughness is not None:
            roughness = rest[:1].clamp(0, 1)
        size *= int(albedo.shape[-1]) / width  # a tile trimmed to the texture's period keeps its metres per texel
    info = {"tileable": info, "fit": fitted}
    if reference.mode == "tile" and reference.repeat == "vary":
        vary = vary or VarySettings()
        albedo, height, roughness, info["vary"] = _varied(albedo, height, roughness, vary, seed)
        size *= vary.periods  # the same metres per texel: K swatches wide
    return SwatchMaterial(albedo=albedo.contiguous(), height=height, roughness=roughness, metallic=metallic,
                          size=size, mode=reference.mode, repeat=reference.repeat,
                          material=reference.material, info=info, prompt=reference.prompt)


def _varied(albedo: torch.Tensor, height: torch.Tensor | None, roughness: torch.Tensor | None,
            settings: VarySettings, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, dict[str, Any]]:
    """The maps quilted together (one set of offsets and cuts for all), split back."""
    maps = [m for m in (albedo, height, roughness) if m is not None]
    quilted, info = vary_maps(torch.cat(maps), settings, seed)
    albedo, rest = quilted[:3], quilted[3:]
    if height is not None:
        height, rest = rest[:1] - rest[:1].mean(), rest[1:]  # mean 0, as the type says
    if roughness is not None:
        roughness = rest[:1]
    return albedo, height, roughness, info


@register
class SwatchMaterialNode(Node):
    """One bound reference as a material in its own 2D space: albedo (+ height, roughness when fitted),
    made seamless in `tile` mode by one transform shared by every map. Cached per reference, so every
    instance bound to the same reference shares it; `texture.project` lays all its maps."""

    name = "swatch.material"
    version = 3  # 2: photos fitted (albedo de-lit, height, roughness: issue 21); 3: repeat: vary (issue 25)
    Params = MaterialParams
    map_over = "references"
    resources = Resources(num_cpus=1, memory_mb=1024)

    def run(self, ctx: Context, references: Reference) -> SwatchMaterial:
        if not references.images:
            raise UserError("the reference has no images", node=ctx.node_id, item=ctx.item,
                            hint="bind at least one image to this instance in the references file")
        image = references.images[0]
        if image.dim() != 3 or image.shape[0] != 3 or min(image.shape[-2:]) < 8:
            raise UserError(f"reference image 0 is unusable (shape {tuple(image.shape)}, needs [3, H>=8, W>=8])",
                            node=ctx.node_id, item=ctx.item, hint="replace the image file")
        p = self.params
        return material_from_reference(references, p.tile_settings(), p.fit, p.work_size, p.roughness_from_photos,
                                       VarySettings(periods=p.vary_periods), ctx.seed)
