"""BRDF decomposition on a procedural scene with a known material (fast)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from graphflow import Keyed, UserError
from graphflow.testing import make_context
from nodes.brdf import metrics
from nodes.brdf.baked import BakedLighting, estimate_baked_lighting, luminance, render_baked
from nodes.brdf.decompose import decompose_texture
from nodes.brdf.materials import MATERIAL_PRIORS, material_prior
from nodes.brdf.nodes import ClassReferences, Decompose, TextureFromScene
from nodes.brdf.normals import height_normals, shading_tilt
from nodes.brdf.texels import ambient_occlusion
from nodes.types import Reference, TextureMap

from helpers.brdf_scenes import DEFAULT_LIGHT, bake_known_material, checker_albedo, instance_geometry, sphere_on_floor

SIZE = 48
MATERIALS = {  # instance -> (checker colours, roughness, metallic)
    "sphere": (((0.7, 0.2, 0.1), (0.2, 0.5, 0.7)), 0.85, 0.0),
    "floor": (((0.5, 0.35, 0.2), (0.3, 0.2, 0.1)), 0.45, 0.0),
}


@pytest.fixture(scope="module")
def baked() -> dict:
    torch.set_num_threads(1)
    scene, instances = sphere_on_floor(rings=16, segments=32)
    out = {"scene": scene, "instances": instances}
    for name, (colours, rough, metal) in MATERIALS.items():
        geometry = instance_geometry(scene, instances[name], SIZE)
        verts = scene.faces[geometry.face]
        uv = (scene.uvs[verts] * geometry.barycentric[..., None]).sum(1)
        albedo = checker_albedo(uv, colours)
        appearance, occlusion = bake_known_material(scene, geometry, albedo, rough, metal, ao_rays=128,
                                                    light_samples=64)
        out[name] = {"geometry": geometry, "albedo": albedo, "appearance": appearance, "occlusion": occlusion}
    return out


def test_decomposition_removes_baked_shading(baked: dict) -> None:
    scene = baked["scene"]
    for name in MATERIALS:
        case = baked[name]
        geometry = case["geometry"]
        occlusion = ambient_occlusion(scene, geometry.position, geometry.normal, 64, torch.Generator().manual_seed(3))
        material = baked["instances"][name].material
        pbr = decompose_texture(case["appearance"], geometry, occlusion, MATERIAL_PRIORS[material], material,
                                steps=10, light_samples=4, generator=torch.Generator().manual_seed(0))
        texels = case["appearance"].reshape(3, -1).T[geometry.index]
        albedo = pbr.albedo.reshape(3, -1).T[geometry.index]
        baseline = metrics.scale_invariant_error(texels, case["albedo"])
        ours = metrics.scale_invariant_error(albedo, case["albedo"])
        assert ours < 0.8 * baseline, (name, baseline, ours)
        n_dot_l = (geometry.normal * DEFAULT_LIGHT.sun_dir).sum(-1).clamp_min(0.0)
        before = metrics.baked_shading_correlation(luminance(texels), n_dot_l, case["occlusion"])
        after = metrics.baked_shading_correlation(luminance(albedo), n_dot_l, case["occlusion"])
        assert after["ao"] < before["ao"], (name, before, after)
        if name == "sphere":  # the floor is flat: n·l is constant there
            assert after["n_dot_l"] < before["n_dot_l"], (name, before, after)
        assert pbr.albedo.shape == (3, SIZE, SIZE) and pbr.normal.shape == (3, SIZE, SIZE)
        assert bool(torch.isfinite(pbr.albedo).all()) and float(pbr.albedo.max()) <= 1.0
        prior = MATERIAL_PRIORS[material]
        rough = pbr.roughness[0][pbr.mask]
        assert prior.roughness[0] <= float(rough.min()) and float(rough.max()) <= prior.roughness[1]
        assert float(pbr.metallic.abs().max()) == 0.0  # dielectric classes are exactly 0


def test_light_estimate_finds_the_sun(baked: dict) -> None:
    case = baked["sphere"]
    geometry = case["geometry"]
    constant = torch.full((geometry.index.numel(), 3), 0.5)
    appearance, occlusion = bake_known_material(baked["scene"], geometry, constant, 0.9, 0.0, ao_rays=64,
                                                light_samples=16)
    texels = appearance.reshape(3, -1).T[geometry.index]
    lighting = estimate_baked_lighting(luminance(texels), geometry.normal, occlusion)
    angle = math.degrees(math.acos(float((lighting.sun_dir * DEFAULT_LIGHT.sun_dir).sum().clamp(-1, 1))))
    assert angle < 10.0, lighting
    # sun / sky ratio of the bake: 1.2 / 0.35
    assert 0.5 < (lighting.sun / lighting.ambient) / (1.2 / 0.35) < 2.0, lighting


def test_height_normals_follow_the_luminance_slope() -> None:
    mask = torch.ones(32, 32, dtype=torch.bool)
    bump = torch.zeros(32, 32)
    bump[12:20, 12:20] = 1.0  # a bright square = a raised plateau
    lum = 0.3 + 0.2 * bump
    normal = height_normals(lum, mask, strength=1.0, sigma=3.0)
    assert torch.allclose(normal.norm(dim=0), torch.ones(32, 32), atol=1e-5)
    # Left edge of the plateau: height rises with x, so the normal leans to -x; right edge to +x.
    assert float(normal[0, 16, 11:13].mean()) < -0.05 and float(normal[0, 16, 19:21].mean()) > 0.05
    # Top edge (rows grow downward): height rises going down the image, normal leans up (+Y).
    assert float(normal[1, 11:13, 16].mean()) > 0.05 and float(normal[1, 19:21, 16].mean()) < -0.05
    flat = height_normals(torch.full((32, 32), 0.4), mask, strength=1.0)
    assert torch.allclose(flat, torch.tensor([0.0, 0.0, 1.0]).reshape(3, 1, 1).expand(3, 32, 32), atol=1e-5)


def test_shading_tilt_recovers_bumps_along_the_sun() -> None:
    """Shape from shading: a bumpy floor baked under the sun; the tilt along the sun comes back."""
    scene, instances = sphere_on_floor(rings=8, segments=16)
    geometry = instance_geometry(scene, instances["floor"], 96)
    # Detail normals: a sinusoidal washboard across the floor's atlas u (tangent) axis.
    verts = scene.faces[geometry.face]
    uv = (scene.uvs[verts] * geometry.barycentric[..., None]).sum(1)
    slope = 0.15 * torch.sin(2 * math.pi * 12 * uv[:, 0])
    detail = torch.nn.functional.normalize(geometry.normal + slope[:, None] * geometry.tangent, dim=-1)
    occlusion = torch.ones(geometry.index.numel())  # no occluder: the test is about the sun's shading
    albedo = torch.full((geometry.index.numel(), 3), 0.5)
    appearance = render_baked(albedo, torch.full_like(albedo[:, :1], 0.9), torch.zeros_like(albedo[:, :1]), detail,
                              geometry.normal, occlusion, DEFAULT_LIGHT, 64, torch.Generator().manual_seed(0))
    image = torch.zeros(3, 96 * 96)
    image[:, geometry.index] = appearance.T
    lum_image = luminance(image.reshape(3, 96, 96), dim=0)
    lighting = DEFAULT_LIGHT  # a flat floor cannot tell the sun from the sky: give the bake's light
    tilt = shading_tilt(lum_image, geometry, occlusion, lighting)
    light_t = torch.stack([(geometry.tangent * lighting.sun_dir).sum(-1),
                           (geometry.bitangent * lighting.sun_dir).sum(-1)], dim=-1)
    ours_along = (tilt * light_t).sum(-1)
    true_along = slope * light_t[:, 0]
    used = ours_along != 0
    assert float(used.float().mean()) > 0.5
    assert float(torch.corrcoef(torch.stack([ours_along[used], true_along[used]]))[0, 1]) > 0.8
    # Across the sun's tangent direction nothing is observable: the tilt is exactly along it.
    across = tilt[:, 0] * light_t[:, 1] - tilt[:, 1] * light_t[:, 0]
    assert float(across.abs().max()) < 1e-6
    no_sun = BakedLighting(1.0, lighting.sun_dir, 0.0)
    assert float(shading_tilt(lum_image, geometry, occlusion, no_sun).abs().max()) == 0.0


def _node_inputs(baked: dict) -> dict:
    textures = {}
    references = {}
    for name in MATERIALS:
        geometry = baked[name]["geometry"]
        textures[name] = TextureMap(image=baked[name]["appearance"], mask=geometry.mask)
        references[name] = Reference(images=(torch.full((3, 8, 8), 0.5),), material=baked["instances"][name].material)
    return {"scene": baked["scene"], "instances": baked["instances"], "textures": textures, "references": references}


def test_decompose_node_is_deterministic_and_checks_its_inputs(baked: dict) -> None:
    inputs = _node_inputs(baked)
    node = Decompose({"steps": 3, "ao_rays": 8, "light_samples": 2})
    runs = []
    for _ in range(2):
        ctx = make_context("brdf", item="sphere", seed=5)
        runs.append(node.run(ctx, scene=inputs["scene"], instances=inputs["instances"]["sphere"],
                             texture=inputs["textures"]["sphere"], references=inputs["references"]["sphere"]))
    for field in ("albedo", "roughness", "metallic", "normal", "occlusion"):
        assert torch.equal(getattr(runs[0], field), getattr(runs[1], field)), field
    assert runs[0].material == "fabric"
    bad_reference = dataclasses.replace(inputs["references"]["sphere"], material="velvet")
    with pytest.raises(UserError, match="unknown material class 'velvet'"):
        node.run(make_context("brdf", item="sphere"), scene=inputs["scene"], instances=inputs["instances"]["sphere"],
                 texture=inputs["textures"]["sphere"], references=bad_reference)
    with pytest.raises(Exception):
        Decompose({"steps": -1})
    with pytest.raises(Exception):
        Decompose({"stepz": 3})


def test_texture_from_scene_samples_each_part_texture(baked: dict) -> None:
    scene = baked["scene"]
    checker = torch.zeros(3, 16, 16)
    checker[0, :8, :] = 1.0  # red top half (v < 0.5), blue bottom half
    checker[2, 8:, :] = 1.0
    floor_info = {**scene.part_info[1], "base_color_factor": [0.2, 0.3, 0.4, 1.0]}
    scene = dataclasses.replace(scene, part_textures=(checker, None), part_info=(scene.part_info[0], floor_info))
    node = TextureFromScene({"size": 32})
    sphere = node.run(make_context("texture", item="sphere"), scene=scene, instances=baked["instances"]["sphere"])
    assert sphere.image.shape == (3, 32, 32)
    top, bottom = sphere.image[:, 2:12, :][:, sphere.mask[2:12, :]], sphere.image[:, 20:30, :][:, sphere.mask[20:30, :]]
    assert float(top[0].mean()) > 0.9 and float(top[2].mean()) < 0.1
    assert float(bottom[2].mean()) > 0.9 and float(bottom[0].mean()) < 0.1
    floor = node.run(make_context("texture", item="floor"), scene=scene, instances=baked["instances"]["floor"])
    assert torch.allclose(floor.image[:, floor.mask].mean(1), torch.tensor([0.2, 0.3, 0.4]), atol=1e-5)
    assert floor.info["untextured_parts"] == ["floor"]


def test_class_references_carry_the_instance_hints(baked: dict) -> None:
    refs = ClassReferences().run(make_context("classes"), instances=baked["instances"])
    assert isinstance(refs, Keyed) and list(refs) == ["sphere", "floor"]
    assert refs["sphere"].material == "fabric" and refs["floor"].material == "wood"
    forced = ClassReferences({"material": "metal"}).run(make_context("classes"), instances=baked["instances"])
    assert {r.material for r in forced.values()} == {"metal"}
    with pytest.raises(UserError, match="unknown material class"):
        ClassReferences({"material": "unobtainium"}).run(make_context("classes"), instances=baked["instances"])
    assert material_prior("glass").roughness[1] <= 0.2
