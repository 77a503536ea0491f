"""Texture quality against the swatch repeated at its real size (issue 13's measure), per instance.

Runs the shipped demo graph's texturing chain through `graphflow.run` (`nodes.quality`:
texture.project -> distill.semantic -> distill.pixel -> superres.anchored -> brdf.decompose) on a scene
and prints, per instance, the structure distance of the result and of four reference points measured in
the same run (the ideal at another phase: what a
perfect result scores; a flat mean colour; the swatch stretched once over the UV island; the swatch at
twice its size), the Portilla-Simoncelli distance, ΔE76, seam ratio and outlier share; plus the same
for texture.project alone; then per instance and stage (project, semantic, pixel, superres, brdf) the share
of texels the stage changed, its start choice (`init` in the stage's info), structure, ΔE76, UV seam ratio and
invented colours (issue 25 item 5). Last line: JSON with the per-instance ratios result / ideal-at-another-phase
and the per-stage rows.

    python bench/quality.py [--scene shapes|demo|photos] [--steps fewer|shipped] [--set NODE.PARAM=VALUE ...]

`--set semantic.bypass=false` measures the chain with the semantic stage on (it is off in the shipped graphs).

`--scene photos` (issue 25): photo-like swatches (tests/helpers/photo_swatches.py, tuning and held-out sets)
and the shapes scene's procedural swatches, each laid in `tile` mode on a 1.5 x 1.5 m floor, 4 x 4 repeats (the issue's 3 m floor at 0.75 m, half scale), through
the shipped chain; per stage (swatch.material + texture.project, semantic, pixel, superres, brdf) the share
of texels it changed, the tile-seam ratios (a, b, c), invented colours, structure and ΔE76; plus the crop
tiled by hand. Last line: JSON with every row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from graphflow import Keyed
from nodes.measures.colour import invented_colour_share
from nodes.quality.acceptance import evaluate_instance, evaluate_run, format_table
from nodes.quality.chain import FEWER_STEPS, ChainResult, ChainRun, run_chain
from nodes.quality.photo import photo_row
from nodes.quality.scenes import run_scene
from nodes.texture.project import ProjectionSettings, project_instance
from nodes.quality.shapes import shapes_references
from nodes.types import Reference
from tests.helpers.photo_swatches import HELD_OUT, TUNING, floor_scene, reference_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", choices=["shapes", "demo", "photos"], default="shapes")
    parser.add_argument("--steps", choices=["fewer", "shipped"], default="fewer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swatches", default="", help="photos: comma-separated swatch names (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a param of the shipped graph (YAML value), after the steps preset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    if args.scene == "photos":
        photo_stages(args.steps, [n for n in args.swatches.split(",") if n], overrides)
        return
    start = time.perf_counter()
    run = run_scene(args.scene, merged(FEWER_STEPS if args.steps == "fewer" else {}, overrides))
    seconds = time.perf_counter() - start
    final_rows, start_rows = evaluate_run(run), evaluate_run(run, stage="start")
    print(f"## {args.scene}: exported albedo (after distillation, super-resolution, BRDF)\n")
    print(format_table(final_rows))
    print(f"\n## {args.scene}: texture.project alone\n")
    print(format_table(start_rows))
    print(f"\n## {args.scene}: per stage\n")
    stage_rows = scene_stage_table(run)
    print(f"\nchain time {seconds:.1f} s")
    print(json.dumps({
        "scene": args.scene, "steps": args.steps, "chain_seconds": round(seconds, 1),
        "passed": sum(not r.failures() for r in final_rows), "instances": len(final_rows),
        "result_over_ideal_phase": {r.instance: round(r.structure["result"] / max(r.structure["ideal_phase"], 1e-9), 3)
                                    for r in final_rows},
        "delta_e_max": round(max(r.delta_e for r in final_rows), 2),
        "seam_ratio_max": round(max(r.seam for r in final_rows), 3),
        "stages": stage_rows,
    }))


SCENE_STAGES = ("project", "semantic", "pixel", "superres", "brdf")


def changed_share(previous: torch.Tensor | None, image: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of `mask`'s texels a stage moved by more than 2/255 from `previous` (resampled to `image`'s size)."""
    if previous is None:
        return math.nan
    before = F.interpolate(previous.float()[None], size=image.shape[-2:], mode="bilinear")[0]
    return float(((image.float() - before).abs().amax(0) > 2 / 255)[mask.bool()].float().mean())


def stage_maps(result: ChainResult) -> list[tuple[str, torch.Tensor, torch.Tensor, str]]:
    """(stage, albedo atlas, mask, start choice) of one instance, in chain order."""
    maps = [("project", result.start.image, result.start.mask, "")]
    for stage in SCENE_STAGES[1:-1]:
        texture = result.stages[stage]
        chosen = str(texture.info.get("init", "")) if stage in ("semantic", "pixel") else ""  # superres: carried on
        maps.append((stage, texture.image, texture.mask, chosen))
    maps.append(("brdf", result.final.albedo, result.final.mask, ""))
    return maps


def scene_stage_rows(run: ChainRun, name: str) -> list[dict]:
    """One row per stage of instance `name`: what the stage changed and issue 13/25's measures of its atlas."""
    reference, rows, previous = run.references[name], [], None
    swatch = reference.images[0].float()
    for stage, image, mask, init in stage_maps(run.results[name]):
        density = run.density(name, image)
        quality = evaluate_instance(run.scene, run.instances, name, reference, image, density,
                                    run.results[name].views, full=False)
        per_pixel = density * reference.size / swatch.shape[-1] if reference.size else None
        rows.append({"instance": name, "stage": stage, "init": init,
                     "changed": round(changed_share(previous, image, mask), 4),
                     "structure": round(quality.structure["result"], 4), "bound": round(quality.structure_bound, 4),
                     "delta_e": round(quality.delta_e, 2), "seam": round(quality.seam, 3),
                     "invented": round(invented_colour_share(image.float(), mask.bool(), swatch,
                                                             texels_per_pixel=per_pixel), 5)})
        previous = image
    return rows


def scene_stage_table(run: ChainRun) -> list[dict]:
    """Print and return every instance's per-stage rows (`scene_stage_rows`)."""
    print("| instance | stage | start kept/chosen | changed | structure / bound | ΔE76 | seam ratio | invented |")
    print("|" + "---|" * 8)
    rows = []
    for name in run.results:
        for r in scene_stage_rows(run, name):
            rows.append(r)
            print(f"| {r['instance']} | {r['stage']} | {r['init']} | {r['changed']:.4f} | {r['structure']:.4f} / "
                  f"{r['bound']:.4f} | {r['delta_e']:.2f} | {r['seam']:.2f} | {r['invented']:.4f} |", flush=True)
    return rows


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """`NODE.PARAM=VALUE` strings as node id -> {param: value} (values read as YAML: true, 3, 0.5, text)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        node, dot, param = target.partition(".")
        if not (sep and dot and node and param):
            raise SystemExit(f"--set {item!r}: expected NODE.PARAM=VALUE, e.g. semantic.bypass=false")
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out


def merged(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node param overrides, later layers winning per param."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for node, values in layer.items():
            out.setdefault(node, {}).update(values)
    return out


PHOTO_WIDTH, PHOTO_CROP = 1.5, 64  # 4 x 4 repeats as on the issue's 3 m floor at 0.75 m, at half the scale (CPU time)
PHOTO_FEWER = {**FEWER_STEPS, "material": {"seamless": True}, "views": {"max_count": 6, "resolution": 96},
               "brdf": {"ao_rays": 4}, "project": {"texels_per_metre": 256 / PHOTO_WIDTH}}


def photo_swatches() -> Iterator[tuple[str, str, Reference]]:
    """(set, name, Reference): the photo sets and the shapes scene's procedural swatches as floor swatches."""
    for group, swatches in (("tuning", TUNING), ("held_out", HELD_OUT)):
        for swatch in swatches:
            yield group, swatch.name, reference_of(swatch, size=PHOTO_WIDTH / 4, crop=PHOTO_CROP)
    for name, ref in shapes_references().items():
        if ref.mode == "tile":
            yield "procedural", name, dataclasses.replace(ref, size=PHOTO_WIDTH / 4)


def photo_stage_rows(group: str, name: str, reference: Reference, steps: str,
                     overrides: dict[str, dict[str, Any]]) -> list[dict]:
    """One row per stage of the chain on the floor: what it changed and every issue-25 measure."""
    scene, instances = floor_scene(PHOTO_WIDTH)
    params = merged(PHOTO_FEWER if steps == "fewer" else {"project": PHOTO_FEWER["project"],
                                                          "material": PHOTO_FEWER["material"]}, overrides)
    run = run_chain(params, scene=scene, instances=instances, references=Keyed({"floor": reference}))
    result = run.results["floor"]
    material = result.stages["material"]
    by_hand = project_instance(scene, instances["floor"].face_mask, reference, ProjectionSettings(
        texels_per_metre=result.start.scale.texels_per_metre, max_size=4096)).image
    maps = [("crop tiled by hand", by_hand, result.start.mask, reference.images[0], reference.size),
            ("material+project", result.start.image, result.start.mask, material.albedo, material.size)]
    maps += [(stage, result.stages[stage].image, result.stages[stage].mask, material.albedo, material.size)
             for stage in ("semantic", "pixel", "superres")]
    maps.append(("brdf", result.final.albedo, result.final.mask, material.albedo, material.size))
    rows, previous = [], None
    for stage, image, mask, tile, tile_size in maps:
        density = run.density("floor", image)
        quality = evaluate_instance(scene, instances, "floor", reference, image, density, result.views, full=False)
        row = photo_row(name, image, mask, reference.images[0], reference.size, tile, tile_size, density, quality)
        changed = changed_share(previous if stage != "material+project" else None, image, mask)
        previous = image
        rows.append({"set": group, "swatch": name, "stage": stage, "changed": round(changed, 4),
                     "a": round(row.seams.correlation, 3), "b": round(row.seams.step, 3), "c": round(row.seams.band, 3),
                     "invented": round(row.invented, 5), "structure": round(row.structure, 4),
                     "bound": round(row.structure_bound, 4), "delta_e": round(row.delta_e, 2),
                     "pass": not row.failures()})
    return rows


def photo_stages(steps: str, only: list[str], overrides: dict[str, dict[str, Any]]) -> None:
    start, rows = time.perf_counter(), []
    print("| set | swatch | stage | changed | (a) corr | (b) step | (c) band | invented | structure / bound | ΔE76 | pass |")
    print("|" + "---|" * 11)
    for group, name, reference in photo_swatches():
        if only and name not in only:
            continue
        for r in photo_stage_rows(group, name, reference, steps, overrides):
            rows.append(r)
            print(f"| {r['set']} | {r['swatch']} | {r['stage']} | {r['changed']:.4f} | {r['a']:.2f} | {r['b']:.2f} | "
                  f"{r['c']:.2f} | {r['invented']:.4f} | {r['structure']:.4f} / {r['bound']:.4f} | {r['delta_e']:.2f} | "
                  f"{'yes' if r['pass'] else 'NO'} |", flush=True)
    print(f"\nchain time {time.perf_counter() - start:.1f} s")
    print(json.dumps({"scene": "photos", "steps": steps, "rows": rows}))


if __name__ == "__main__":
    main()
