"""Issue 4's acceptance picture: each demo-room instance's distilled renders beside its reference.

Runs `distill.semantic` then `distill.pixel` with the shipped defaults on the
embedded demo room (io.demo_room -> segment.parts -> refs.bind -> views.sample),
prints the acceptance table (patch sliced-Wasserstein distance of the renders
to the instance's own reference vs a flat mean-colour texture and the
reference stretched once over the UV island; binding accuracy) and saves
`docs/distill_demo.png`: per row, the reference, three renders of the distilled
texture, the distilled atlas, and a render of the tiled-reference baseline.

    python docs/make_distill_figure.py [--out docs/distill_demo.png] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from graphflow.tasks import derive_seed
from graphflow.testing import make_context
from nodes.distill.acceptance import evaluate, format_table, render_texture, tiled_baseline
from nodes.distill.nodes import DistillPixel, DistillSemantic, SuperResAnchored
from nodes.distill.texture_param import select_instance_views
from nodes.render.nodes import SampleViews
from nodes.render.uv_raster import uv_island_mask
from nodes.scene.nodes import BindReferences, DemoRoomNode, SegmentParts

TILE = 128


def to_srgb(image: torch.Tensor) -> torch.Tensor:
    x = image.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def tile(image: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image[None].float(), size=(TILE, TILE), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("distill_demo.png")))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    room = DemoRoomNode({}).run(make_context("scene"))
    instances = SegmentParts({}).run(make_context("segment"), room.scene)
    refs = BindReferences({}).run(make_context("bind"), instances, references=room.references)
    views = SampleViews({}).run(make_context("views"), room.scene, instances)
    textures = {}
    for name in instances:
        start = time.perf_counter()
        seed = derive_seed(0, name)  # the per-item seed of a graph run: the figure shows the demo's textures
        sem = DistillSemantic({}).run(make_context("semantic", item=name, seed=seed), room.scene, instances[name],
                                      refs[name], views)
        textures[name] = DistillPixel({}).run(make_context("pixel", item=name, seed=seed), room.scene, instances[name],
                                              refs[name], views, sem)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    rows, accuracy = evaluate(room.scene, instances, refs, views, textures)
    print(format_table(rows, accuracy))
    print("| instance | superres s | anchor PSNR dB | anchor L1 | detail gain (output) | detail gain (input, upsampled) |")
    print("|---|---|---|---|---|---|")
    for name, tex in textures.items():
        start = time.perf_counter()
        sr = SuperResAnchored({}).run(make_context("superres", item=name, seed=derive_seed(0, name)), tex, refs[name])
        i = sr.info
        print(f"| {name} | {time.perf_counter() - start:.1f} | {i['anchor_psnr']:.2f} | {i['anchor_l1']:.4f} | "
              f"{i['detail_gain']:.3f} | {i['detail_gain_input']:.3f} |", flush=True)

    lines = []
    for name, tex in textures.items():
        iv = select_instance_views(views, name)
        renders = render_texture(tex.image, iv).flip(-2)  # row 0 is the bottom in the views' layout
        atlas_mask = uv_island_mask(room.scene.uvs, room.scene.faces[instances[name].face_mask], tex.image.shape[-1])
        baseline = render_texture(tiled_baseline(refs[name].images[0].float(), atlas_mask), iv).flip(-2)
        picks = torch.linspace(0, renders.shape[0] - 1, 3).round().long().tolist()
        cells = [tile(refs[name].images[0])] + [tile(renders[i]) for i in picks] + [tile(tex.image), tile(baseline[picks[0]])]
        lines.append(torch.cat(cells, dim=2))
    sheet = to_srgb(torch.cat(lines, dim=1))
    Image.fromarray((sheet.permute(1, 2, 0) * 255).round().byte().numpy()).save(args.out)
    print(f"saved {args.out} (columns: reference | 3 renders of the distilled texture | atlas | tiled-reference baseline)")


if __name__ == "__main__":
    main()
