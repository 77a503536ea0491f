"""Issue 25 item 4's figure and table: photo-like swatches (tests/helpers/photo_swatches.py) at 0.75 m on the
issue's 3 x 3 m floor, one pixel per texel (512 / 3 texels per metre: the photo's own pixels), laid by
texture.project with `repeat: exact` and with `repeat: vary` (swatch.material's quilted 4 x 4 tile), the
swatch's period marked in cyan on both, then a close-up of the vary floor at 2 x (nearest).

    PYTHONPATH=.:tests python docs/make_repeat_vary_figure.py   # writes docs/repeat_vary.png, prints the table
"""
from __future__ import annotations

from pathlib import Path

import kornia
import torch
from helpers.photo_swatches import HELD_OUT, TUNING, floor_scene, reference_of
from PIL import Image, ImageDraw

from nodes.swatch.nodes import material_from_reference
from nodes.swatch.tileable import TileSettings
from nodes.swatch.vary import vary_measures
from nodes.texture.project import ProjectionSettings, project_instance

WIDTH, CROP, GAP, CLOSE = 3.0, 128, 8, 128
SWATCHES = (TUNING[0], TUNING[1], HELD_OUT[2], TUNING[3])  # bricks, stone, roof, wood


def picture(atlas: torch.Tensor, period: tuple[int, int] | None) -> Image.Image:
    image = Image.fromarray((kornia.color.linear_rgb_to_rgb(atlas.clamp(0, 1)).permute(1, 2, 0).numpy() * 255
                             + 0.5).astype("uint8"))
    if period is not None:
        draw = ImageDraw.Draw(image)
        for y in range(0, image.height, period[0]):
            draw.line([(0, y), (image.width, y)], fill=(0, 255, 255))
        for x in range(0, image.width, period[1]):
            draw.line([(x, 0), (x, image.height)], fill=(0, 255, 255))
    return image


def main() -> None:
    scene, instances = floor_scene(WIDTH)
    settings = ProjectionSettings(texels_per_metre=512 / WIDTH, max_size=512)
    face_mask = instances["floor"].face_mask
    rows, table = [], []
    for swatch in SWATCHES:
        exact = material_from_reference(reference_of(swatch, size=WIDTH / 4, crop=CROP), TileSettings())
        vary = material_from_reference(reference_of(swatch, size=WIDTH / 4, crop=CROP, repeat="vary"),
                                       TileSettings(), seed=0)
        period = tuple(exact.albedo.shape[-2:])
        laid = {name: project_instance(scene, face_mask, m, settings).image for name, m in
                (("exact", exact), ("vary", vary))}
        for name, atlas in laid.items():
            m = vary_measures(exact.albedo, atlas)
            table.append(f"| {swatch.name} | {period[1]} x {period[0]} | {name} | {m['autocorrelation']:.2f} | "
                         f"{m['structure']:.4f} / {m['structure_bound']:.4f} | {m['delta_e']:.2f} |")
        close = picture(laid["vary"][:, 200:200 + CLOSE, 200:200 + CLOSE], None).resize((2 * CLOSE, 2 * CLOSE),
                                                                                        Image.NEAREST)
        parts = [picture(laid["exact"], period), picture(laid["vary"], period), close]
        row = Image.new("RGB", (sum(p.width for p in parts) + 2 * GAP, parts[0].height + 14), "white")
        x = 0
        draw = ImageDraw.Draw(row)
        for part, label in zip(parts, ("repeat: exact", "repeat: vary", "vary, close-up 2x")):
            row.paste(part, (x, 14))
            draw.text((x + 2, 1), f"{swatch.name}: {label}", fill="black")
            x += part.width + GAP
        rows.append(row)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + GAP * (len(rows) - 1)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + GAP
    # 256 colours (no dither): a third of the bytes, no visible change at one pixel per texel
    sheet.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(Path(__file__).with_name("repeat_vary.png"),
                                                                              optimize=True)
    print("| swatch | period (texels) | repeat | autocorrelation at the period | structure / bound | ΔE76 |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
