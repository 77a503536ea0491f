"""Texture quality against the swatch repeated at its real size (issue 13's measure), per instance.

Runs the shipped texturing chain (texture.project -> distill.semantic -> distill.pixel ->
superres.anchored -> brdf.decompose) on a scene and prints, per instance, the structure distance of
the result and of four reference points measured in the same run (the ideal at another phase: what a
perfect result scores; a flat mean colour; the swatch stretched once over the UV island; the swatch at
twice its size), the Portilla-Simoncelli distance, ΔE76, seam ratio and outlier share; plus the same
for texture.project alone. Last line: JSON with the per-instance ratios result / ideal-at-another-phase.

    python bench/quality.py [--scene shapes|demo] [--steps fewer|shipped]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from graphflow.testing import make_context
from nodes.distill.acceptance import CHAIN_DEFAULTS, evaluate_instance, format_table, texture_chain
from nodes.scene.nodes import SegmentParts

FEWER_STEPS = {"views": {"max_count": 8}, "semantic": {"steps": 30}, "pixel": {"steps": 20}, "superres": {"steps": 10},
               "brdf": {"ao_rays": 8}}


def inputs(which: str):
    if which == "shapes":
        from nodes.texture.samples import shapes_references, shapes_scene

        scene = shapes_scene()
        return scene, SegmentParts({}).run(make_context("segment"), scene), shapes_references()
    from nodes.scene.nodes import BindReferences, DemoRoomNode

    room = DemoRoomNode({}).run(make_context("scene"))
    instances = SegmentParts({}).run(make_context("segment"), room.scene)
    return room.scene, instances, BindReferences({}).run(make_context("bind"), instances, references=room.references)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", choices=["shapes", "demo"], default="shapes")
    parser.add_argument("--steps", choices=["fewer", "shipped"], default="fewer")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene, instances, refs = inputs(args.scene)
    start = time.perf_counter()
    results = texture_chain(scene, instances, refs, FEWER_STEPS if args.steps == "fewer" else {})
    seconds = time.perf_counter() - start
    density0 = float(CHAIN_DEFAULTS["project"]["texels_per_metre"])
    final_rows, start_rows = [], []
    for name, result in results.items():
        density = density0 * result.final.albedo.shape[-1] / result.start.image.shape[-1]
        final_rows.append(evaluate_instance(scene, instances, name, refs[name], result.final.albedo, density,
                                            result.views))
        start_rows.append(evaluate_instance(scene, instances, name, refs[name], result.start.image, density0,
                                            result.views))
    print(f"## {args.scene}: exported albedo (after distillation, super-resolution, BRDF)\n")
    print(format_table(final_rows))
    print(f"\n## {args.scene}: texture.project alone\n")
    print(format_table(start_rows))
    print(f"\nchain time {seconds:.1f} s")
    print(json.dumps({
        "scene": args.scene, "steps": args.steps, "chain_seconds": round(seconds, 1),
        "passed": sum(not r.failures() for r in final_rows), "instances": len(final_rows),
        "result_over_ideal_phase": {r.instance: round(r.structure["result"] / max(r.structure["ideal_phase"], 1e-9), 3)
                                    for r in final_rows},
        "delta_e_max": round(max(r.delta_e for r in final_rows), 2),
        "seam_ratio_max": round(max(r.seam for r in final_rows), 3),
    }))


if __name__ == "__main__":
    main()
