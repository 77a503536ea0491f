"""Issue 13's figures: per scene, one row per instance: the swatch | the result rendered | texture.project rendered.

Each render column shows a close-up (one pixel per texel, straight at the surface) and the graph's
first view of the instance. Writes docs/quality_<scene>.png and the measured table docs/quality_<scene>.md.

    python docs/make_quality_figures.py [shapes demo chair] [--steps fewer|shipped]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from nodes.distill.texture_param import select_instance_views
from nodes.distill.world_scale import closeup_views
from nodes.quality.acceptance import evaluate_instance, format_table, render_filtered
from nodes.quality.chain import FEWER_STEPS
from nodes.quality.scenes import SCENES, run_scene

DOCS = Path(__file__).resolve().parent
CELL = 160


def _cell(image: torch.Tensor) -> torch.Tensor:
    """`[3, h, w]` linear -> `[3, CELL, CELL]` sRGB-ish for display (aspect kept, padded white)."""
    h, w = image.shape[-2:]
    scale = CELL / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    out = torch.ones(3, CELL, CELL)
    y, x = (CELL - size[0]) // 2, (CELL - size[1]) // 2
    out[:, y:y + size[0], x:x + size[1]] = small.clamp(0, 1) ** (1 / 2.2)
    return out


def _view(atlas: torch.Tensor, views) -> torch.Tensor:
    """The view that shows most of the instance, on white."""
    best = int(views.mask.flatten(1).sum(1).argmax())
    render = render_filtered(atlas, views)[best]
    background = (1 - views.mask[best]) * torch.tensor([1.0, 1.0, 1.0])[:, None, None]
    return (render + background).flip(1)  # rows of views are bottom-up


def figure(which: str, params: dict) -> None:
    torch.set_num_threads(2)
    run = run_scene(which, params)
    rows, table = [], []
    for name, result in run.results.items():
        density = run.density(name, result.final.albedo)
        close = closeup_views(run.scene, run.instances, name, density)
        orbit = select_instance_views(result.views, name)
        start_up = F.interpolate(result.start.image[None], size=result.final.albedo.shape[-2:], mode="bilinear",
                                 align_corners=False)[0]
        cells = [_cell(run.references[name].images[0]),
                 _cell(_view(result.final.albedo, close)), _cell(_view(result.final.albedo, orbit)),
                 _cell(_view(start_up, close)), _cell(_view(start_up, orbit))]
        rows.append(torch.cat(cells, dim=2))
        table.append(evaluate_instance(run.scene, run.instances, name, run.references[name], result.final.albedo,
                                       density, result.views))
        print(name, "done", flush=True)
    sheet = torch.cat(rows, dim=1)
    Image.fromarray((sheet.permute(1, 2, 0) * 255).round().byte().numpy()).save(DOCS / f"quality_{which}.png")
    text = format_table(table)
    (DOCS / f"quality_{which}.md").write_text(
        f"# {which}: swatch | result (close-up, view) | texture.project (close-up, view)\n\n{text}\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenes", nargs="*", default=list(SCENES), help=f"of {', '.join(SCENES)}")
    parser.add_argument("--steps", choices=["fewer", "shipped"], default="shipped")
    args = parser.parse_args()
    for which in args.scenes:
        figure(which, FEWER_STEPS if args.steps == "fewer" else {})


if __name__ == "__main__":
    main()
