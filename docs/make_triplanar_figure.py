"""docs/triplanar_cut.png's lower row: the dotted ball of the shapes scene (a triplanar chart) laid by
`texture.project` and rendered through mip maps from four orbit views, as `python docs/make_triplanar_figure.py
OUT.png` writes it (the upper row is the same views rendered by the code at 9623cc8, before issue 25's cut;
the views come out upside down: nvdiffrast's row 0 is the bottom)."""
from __future__ import annotations

import sys

import torch
from PIL import Image

from nodes.distill.texture_param import select_instance_views
from nodes.quality.acceptance import render_filtered
from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.render.views import sample_views
from nodes.scene.segment import segment_scene
from nodes.texture.project import project_instance
from nodes.types import ProjectionSettings


def main(out: str) -> None:
    scene, references = shapes_scene(), shapes_references()
    ball = segment_scene(scene)["ball"]
    laid = project_instance(scene, ball.face_mask, references["ball"], ProjectionSettings(texels_per_metre=128))
    views = select_instance_views(sample_views(scene, {"ball": ball}, count=4, resolution=256, isolate=True), "ball")
    renders = render_filtered(laid.image, views)
    renders = torch.where(views.mask > 0, renders, torch.ones_like(renders)).clamp(0, 1) ** (1 / 2.2)
    row = torch.cat(list(renders), -1).permute(1, 2, 0).numpy() * 255
    Image.fromarray(row.astype("uint8")).save(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "triplanar_after.png")
