"""Issue 13's figures: per scene, one row per instance: the swatch | the result rendered | texture.project rendered.

Each render column shows a close-up (one pixel per texel, straight at the surface) and the graph's
first view of the instance. Writes docs/quality_<scene>.png and the measured table docs/quality_<scene>.md.

    python docs/make_quality_figures.py [shapes demo chair] [--steps fewer|shipped]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from graphflow.testing import make_context
from nodes.distill.acceptance import (CHAIN_DEFAULTS, closeup_views, evaluate_instance, format_table,
                                      render_filtered, texture_chain)
from nodes.distill.texture_param import select_instance_views
from nodes.scene.nodes import SegmentParts

DOCS = Path(__file__).resolve().parent
ASSETS = DOCS.parents[1] / "shared" / "assets"
CELL = 160
FEWER_STEPS = {"views": {"max_count": 8}, "semantic": {"steps": 30}, "pixel": {"steps": 20}, "superres": {"steps": 10},
               "brdf": {"ao_rays": 8}}


def scene_inputs(which: str):
    if which == "shapes":
        from nodes.texture.samples import shapes_references, shapes_scene

        scene = shapes_scene()
        return scene, SegmentParts({}).run(make_context("segment"), scene), shapes_references()
    if which == "demo":
        from nodes.scene.nodes import BindReferences, DemoRoomNode

        room = DemoRoomNode({}).run(make_context("scene"))
        instances = SegmentParts({}).run(make_context("segment"), room.scene)
        return room.scene, instances, BindReferences({}).run(make_context("bind"), instances,
                                                             references=room.references)
    sys.path.insert(0, str(DOCS.parent / "tests" / "distill"))
    from graphflow import Keyed
    from nodes.scene.loader import load_scene
    from test_distill_acceptance import chair_swatches

    scene = load_scene(ASSETS / "SheenChair" / "SheenChair.gltf")
    instances = SegmentParts({"by": "node"}).run(make_context("segment"), scene)
    refs = chair_swatches(scene, instances)
    return scene, Keyed({n: instances[n] for n in refs}), refs


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
    scene, instances, refs = scene_inputs(which)
    results = texture_chain(scene, instances, refs, params)
    rows, table = [], []
    density0 = float({**CHAIN_DEFAULTS["project"], **params.get("project", {})}["texels_per_metre"])
    for name, result in results.items():
        density = density0 * result.final.albedo.shape[-1] / result.start.image.shape[-1]
        close = closeup_views(scene, instances, name, density)
        orbit = select_instance_views(result.views, name)
        start_up = F.interpolate(result.start.image[None], size=result.final.albedo.shape[-2:], mode="bilinear",
                                 align_corners=False)[0]
        cells = [_cell(refs[name].images[0]),
                 _cell(_view(result.final.albedo, close)), _cell(_view(result.final.albedo, orbit)),
                 _cell(_view(start_up, close)), _cell(_view(start_up, orbit))]
        rows.append(torch.cat(cells, dim=2))
        table.append(evaluate_instance(scene, instances, name, refs[name], result.final.albedo, density, result.views))
        print(name, "done", flush=True)
    sheet = torch.cat(rows, dim=1)
    Image.fromarray((sheet.permute(1, 2, 0) * 255).round().byte().numpy()).save(DOCS / f"quality_{which}.png")
    text = format_table(table)
    (DOCS / f"quality_{which}.md").write_text(
        f"# {which}: swatch | result (close-up, view) | texture.project (close-up, view)\n\n{text}\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenes", nargs="*", default=["shapes", "demo", "chair"])
    parser.add_argument("--steps", choices=["fewer", "shipped"], default="shipped")
    args = parser.parse_args()
    for which in args.scenes:
        figure(which, FEWER_STEPS if args.steps == "fewer" else {})


if __name__ == "__main__":
    main()
