"""docs/pbr_photo_box_wall.png: a box and a wall textured from one brick photo (issue 21 item 3 / acceptance).

The photo is rendered from known brick maps under one raking light (tests/helpers/pbr_swatches.py) and goes
through the shipped steps: swatch.material's fit (light removed, height) -> texture.project (lays albedo and
height alike) -> brdf.decompose's unlit maps (normals from the laid height). Rendered by preview.render's
`render_view` under two different key lights; columns: flat maps (the photo as albedo, no relief) and the
derived maps. Usage: PYTHONPATH=$PWD python bench/pbr_photo_figures.py [--out docs/pbr_photo_box_wall.png]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.pbr_swatches import RAKING, bricks, photograph  # noqa: E402

import nodes.catalog  # noqa: E402,F401
from graphflow.testing import make_context  # noqa: E402
from nodes.brdf.decompose import unlit_maps  # noqa: E402
from nodes.brdf.materials import material_prior  # noqa: E402
from nodes.brdf.texels import texel_geometry  # noqa: E402
from nodes.export import preview  # noqa: E402
from nodes.export.gltf_writer import dilated, linear_to_srgb  # noqa: E402
from nodes.render.embree import RayCaster  # noqa: E402
from nodes.scene.demo_room import DemoInstance, box, instance_mesh  # noqa: E402
from nodes.scene.loader import assemble_scene  # noqa: E402
from nodes.scene.nodes import SegmentParts  # noqa: E402
from nodes.swatch.nodes import SwatchMaterialNode  # noqa: E402
from nodes.texture.project import project_instance  # noqa: E402
from nodes.types import ProjectionSettings, Reference  # noqa: E402

KEYS = (((0.8, 0.5, 0.35), 3.0), ((-0.7, 0.25, 0.65), 3.0))  # two key lights, from the right / the left


def box_and_wall():
    wall = DemoInstance("wall", "stone", "brick wall", "", "", tuple(box((0.0, 0.9, -0.6), (2.4, 1.8, 0.08))))
    cube = DemoInstance("box", "stone", "brick box", "", "", tuple(box((0.2, 0.3, 0.3), (0.6, 0.6, 0.6))))
    return assemble_scene([instance_mesh(wall), instance_mesh(cube)], unwrap_mode="never", source="figure")


def maps_for(scene, instances, reference: Reference, derived: bool):
    material = SwatchMaterialNode({}).run(make_context("material"), reference)
    if not derived:  # the photo as albedo, no relief: today's path without a fit
        material = SwatchMaterialNode({"fit": "none"}).run(make_context("material"), reference)
    out = {}
    for name, inst in instances.items():
        laid = project_instance(scene, inst.face_mask, material, ProjectionSettings(texels_per_metre=160))
        geometry = texel_geometry(scene, inst.face_mask, tuple(laid.image.shape[-2:]), within=laid.mask)
        prior = material_prior("stone")
        maps = unlit_maps(laid.image, geometry, torch.ones(geometry.index.numel()), prior, "stone",
                          normal_strength=1.0 if derived else 0.0, height=laid.height if derived else None)
        out[name] = dataclasses.replace(maps, scale=laid.scale)  # as brdf.decompose passes it
    return out


def render(scene, instances, pbr, key, size: int) -> torch.Tensor:
    names = list(instances)
    face_instance = torch.full((scene.num_faces,), -1, dtype=torch.long)
    for index, name in enumerate(names):
        face_instance[instances[name].face_mask.to(torch.bool)] = index
    maps = [dilated(pbr[n]) for n in names]
    eye = torch.tensor([1.6, 1.5, 2.4])
    target = torch.tensor([0.0, 0.6, -0.1])
    with mock.patch.object(preview, "LIGHTS", (key,)):
        caster = RayCaster(scene.positions, scene.faces)
        image = preview.render_view(scene, caster, face_instance, maps, eye, target, size)
    return linear_to_srgb(image)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/pbr_photo_box_wall.png")
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()
    sw = bricks(160, size=0.6)
    photo = photograph(sw, RAKING)
    reference = Reference(images=(photo,), material="stone", size=sw.size, mode="tile")
    scene = box_and_wall()
    instances = SegmentParts({}).run(make_context("segment"), scene)
    panels = {}
    for derived in (False, True):
        pbr = maps_for(scene, instances, reference, derived)
        for k, key in enumerate(KEYS):
            panels[(k, derived)] = render(scene, instances, pbr, key, args.size)
    s = args.size
    sheet = Image.new("RGB", (2 * s, 2 * s + 16), (30, 30, 30))
    for (k, derived), img in panels.items():
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        sheet.paste(Image.fromarray(arr), (s * int(derived), 16 + s * k))
    ImageDraw.Draw(sheet).text((4, 2), "left: flat maps (photo as albedo)   right: derived (de-lit albedo, "
                               "laid height -> normals); rows: key light from the right / from the left",
                               fill=(230, 230, 230))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    maps_sheet(photo, sw, Path(args.out).with_name("pbr_photo_maps.png"))
    print(args.out)


def maps_sheet(photo: torch.Tensor, sw, out: Path) -> None:
    """Photo | fitted albedo | true albedo | true normal | fitted normal | luminance high-pass normal."""
    from nodes.brdf.photo_metrics import highpass_normals
    from nodes.swatch.fit import fit_reference
    from nodes.swatch.shading import height_to_normal

    albedo, height, _, _, _ = fit_reference(Reference(images=(photo,), material="stone", size=sw.size, mode="fit"))
    row = [linear_to_srgb(photo), linear_to_srgb(albedo), linear_to_srgb(sw.albedo), sw.normal() * 0.5 + 0.5,
           height_to_normal(height, sw.pixel_size) * 0.5 + 0.5, highpass_normals(photo) * 0.5 + 0.5]
    image = torch.cat([r.clamp(0, 1) for r in row], -1)
    arr = (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    sheet = Image.new("RGB", (arr.shape[1], arr.shape[0] + 16), (30, 30, 30))
    sheet.paste(Image.fromarray(arr), (0, 16))
    ImageDraw.Draw(sheet).text((4, 2), "photo | fitted albedo | true albedo | true normal | fitted normal | "
                               "luminance high-pass normal", fill=(230, 230, 230))
    sheet.save(out)


if __name__ == "__main__":
    main()
