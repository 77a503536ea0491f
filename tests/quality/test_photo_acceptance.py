"""Issue 25 acceptance on photo-like swatches (tests/helpers/photo_swatches.py): a non-tileable, unevenly lit,
noisy, JPEG'd crop laid in `tile` mode on a floor goes through the shipped chain (the demo graph's
swatch.material -> texture.project -> distill.semantic -> distill.pixel -> superres.anchored ->
brdf.decompose through `graphflow.run`, fewer steps, small sizes), and the exported albedo has no tile seam
(ratios a, b, c), no invented colour (<= 0.1 % of texels farther than ΔE76 3 from every colour of the
photo), the photo's structure (<= 2 x ideal-at-another-phase + 0.01) and colour (ΔE76 <= 8)."""
from __future__ import annotations

import pytest
import torch

from graphflow import Keyed
from helpers.photo_swatches import HELD_OUT, TUNING, floor_scene, reference_of
from nodes.quality.acceptance import evaluate_instance
from nodes.quality.chain import run_chain
from nodes.quality.photo import PhotoSwatchRow, photo_row

WIDTH, CROP = 1.5, 64  # a 1.5 m floor, the photo 0.375 m wide: 4 x 4 repeats on a 256² atlas
FEWER = {"material": {"seamless": True}, "views": {"max_count": 4, "resolution": 64}, "semantic": {"steps": 10},
         "pixel": {"steps": 8}, "superres": {"steps": 5}, "brdf": {"ao_rays": 4},
         "project": {"texels_per_metre": 256 / WIDTH}}


def chain_rows(swatches) -> list[PhotoSwatchRow]:
    torch.set_num_threads(2)
    scene, instances = floor_scene(WIDTH)
    rows = []
    for swatch in swatches:
        reference = reference_of(swatch, size=WIDTH / 4, crop=CROP)
        run = run_chain(FEWER, scene=scene, instances=instances, references=Keyed({"floor": reference}))
        result = run.results["floor"]
        albedo, material = result.final.albedo, result.stages["material"]
        density = run.density("floor", albedo)
        quality = evaluate_instance(scene, instances, "floor", reference, albedo, density, result.views, full=False)
        rows.append(photo_row(swatch.name, albedo, result.final.mask, reference.images[0], reference.size,
                              material.albedo, material.size, density, quality))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("swatches", [TUNING, HELD_OUT], ids=["tuning", "held_out"])
def test_photo_swatches_tile_without_seams_or_invented_colours(swatches) -> None:
    rows = chain_rows(swatches)
    failures = {row.name: row.failures() for row in rows if row.failures()}
    report = "\n".join(f"{r.name}: a={r.seams.correlation:.2f} b={r.seams.step:.2f} c={r.seams.band:.2f} "
                       f"invented={r.invented:.4f} structure={r.structure:.4f}/{r.structure_bound:.4f} "
                       f"ΔE={r.delta_e:.2f}" for r in rows)
    print("\n" + report)
    assert not failures, report
