"""Issue 25's figure: per photo-like test swatch (tests/helpers/photo_swatches.py, tuning then held-out),
the swatch | the crop tiled as is | swatch.material's tile laid by texture.project, on the issue's 3 x 3 m
floor at 0.75 m, one pixel per texel (the floor's atlas at 512/3 texels per metre = the photo's own
pixels), 3 x 3 repeats with the tile grid (the registered tile boundaries) marked in cyan.

    PYTHONPATH=.:tests python docs/make_photo_figures.py   # writes docs/photo_swatches.png
"""
from __future__ import annotations

from pathlib import Path

import kornia
import torch
from PIL import Image, ImageDraw

from helpers.photo_swatches import HELD_OUT, TUNING, floor_scene, reference_of
from nodes.measures.seams import register_tiles, tile_seams
from nodes.swatch.nodes import material_from_reference
from nodes.swatch.tileable import TileSettings
from nodes.texture.project import ProjectionSettings, project_instance

WIDTH, CROP, REPEATS, GAP = 3.0, 128, 3, 8


def with_grid(atlas: torch.Tensor, mask: torch.Tensor, tile: torch.Tensor) -> tuple[Image.Image, str]:
    """3 x 3 repeats of the atlas from a registered tile corner, the tile boundaries drawn in."""
    period = tuple(tile.shape[-2:])
    oy, ox = register_tiles(atlas, mask, tile, period)
    oy, ox = oy or period[0], ox or period[1]  # start one tile in: the first boundary is inside the view
    view = atlas[:, oy - 1: oy - 1 + REPEATS * period[0] + 2, ox - 1: ox - 1 + REPEATS * period[1] + 2]
    image = Image.fromarray((kornia.color.linear_rgb_to_rgb(view).permute(1, 2, 0).numpy() * 255 + 0.5
                             ).astype("uint8"))
    draw = ImageDraw.Draw(image)
    for k in range(REPEATS + 1):  # a 1-px line between the two texels either side of each boundary
        draw.line([(0, 1 + k * period[0]), (image.width, 1 + k * period[0])], fill=(0, 255, 255))
        draw.line([(1 + k * period[1], 0), (1 + k * period[1], image.height)], fill=(0, 255, 255))
    seams = tile_seams(atlas, mask, tile, period)
    return image, f"a {seams.correlation:.2f} b {seams.step:.2f} c {seams.band:.2f}"


def main() -> None:
    scene, instances = floor_scene(WIDTH)
    settings = ProjectionSettings(texels_per_metre=512 / WIDTH, max_size=512)
    face_mask = instances["floor"].face_mask
    rows = []
    for swatch in TUNING + HELD_OUT:
        reference = reference_of(swatch, size=WIDTH / 4, crop=CROP)
        material = material_from_reference(reference, TileSettings())
        raw = project_instance(scene, face_mask, reference, settings)
        result = project_instance(scene, face_mask, material, settings)
        photo = Image.fromarray((kornia.color.linear_rgb_to_rgb(reference.images[0]).permute(1, 2, 0).numpy() * 255
                                 + 0.5).astype("uint8"))
        by_hand, raw_text = with_grid(raw.image, raw.mask, reference.images[0])
        healed, text = with_grid(result.image, result.mask, material.albedo)
        row = Image.new("RGB", (photo.width + by_hand.width + healed.width + 2 * GAP, by_hand.height + 14), "white")
        for x, part in ((0, photo), (photo.width + GAP, by_hand), (photo.width + by_hand.width + 2 * GAP, healed)):
            row.paste(part, (x, 14))
        draw = ImageDraw.Draw(row)
        draw.text((2, 1), swatch.name, fill="black")
        draw.text((photo.width + GAP + 2, 1), f"crop tiled as is: {raw_text}", fill="black")
        draw.text((photo.width + by_hand.width + 2 * GAP + 2, 1), f"swatch.material: {text}", fill="black")
        rows.append(row)
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height + GAP for r in rows)), "white")
    y = 0
    for row in rows:
        figure.paste(row, (0, y))
        y += row.height + GAP
    out = Path(__file__).resolve().parent / "photo_swatches.png"
    figure.save(out)
    print(out)


if __name__ == "__main__":
    main()
