"""report.page on the awkward-names export scene: the page's files, map paths, swatches and measures (no browser:
tests/e2e/test_run_page.py opens the demo's page in Chromium)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import glb_material_pngs

from graphflow import FileBlob, Keyed, UserError
from graphflow.report import ReportEntry, RunReport
from graphflow.testing import make_context
from nodes.report.nodes import RunPage
from nodes.report.page import focus, mean_density, measures
from nodes.types import Reference, TextureMap


def page_data(files: dict[str, bytes]) -> dict:
    text = files["index_files/page_data.js"].decode()
    return json.loads(text[text.index("=") + 1:].rstrip().rstrip(";"))


def run_page(exports: dict, **extra: object):
    inputs = exports["inputs"]
    return RunPage().run(make_context("page"), scene=inputs["scene"], instances=inputs["instances"], pbr=inputs["pbr"],
                         asset=exports["glb"], **extra)


def test_maps_are_the_materialx_pngs_by_their_sanitised_names(exports: dict) -> None:
    tree = run_page(exports, materials=exports["mtlx"])
    data = page_data(tree.files)
    assert [i["name"] for i in data["instances"]] == list(exports["inputs"]["pbr"])
    for inst in data["instances"]:
        ident = exports["mtlx"].summary["names"][inst["name"]]
        assert inst["maps"] == {"albedo": f"asset_textures/{ident}_baseColor.png",
                                "orm": f"asset_textures/{ident}_occlusionRoughnessMetallic.png",
                                "normal": f"asset_textures/{ident}_normal.png"}
        assert all(path in exports["mtlx"].files for path in inst["maps"].values())
        assert inst["swatches"] == [] and inst["measures"] == []  # no references, no texture info given
    assert not any(p.startswith("index_files/maps/") for p in tree.files)  # never copied
    assert tree.files["index_files/asset.glb.js"].startswith(b'window.GRAPHFLOW_GLB = "Z2xURg')  # base64 of 'glTF'
    assert run_page(exports, materials=exports["mtlx"]).files == tree.files  # deterministic bytes


def test_without_materialx_the_page_writes_the_gltf_own_pngs(exports: dict) -> None:
    tree = run_page(exports)
    glb_pngs = glb_material_pngs(exports["glb"].data)
    for inst in page_data(tree.files)["instances"]:
        assert tree.files[inst["maps"]["albedo"]] == glb_pngs[inst["name"]]["base_color"]
        assert tree.files[inst["maps"]["orm"]] == glb_pngs[inst["name"]]["orm"]


def test_swatch_scale_and_measures_come_from_the_run(exports: dict) -> None:
    name = "2 seat sofa"
    image = torch.rand(3, 40, 80, generator=torch.Generator().manual_seed(0))
    refs = Keyed({name: Reference(images=(image,), material="fabric", size=0.4, mode="tile")})
    info = {"texels_per_metre": 64.0, "sw_to_reference": 0.0123, "note": "not visible in any view: projected only",
            "projection": {"blend_width": 0.08}}
    pbr = exports["inputs"]["pbr"][name]
    texture = Keyed({name: TextureMap(image=pbr.albedo, mask=pbr.mask, info=info)})
    tree = run_page(exports, references=refs, texture=texture, materials=exports["mtlx"])
    inst = next(i for i in page_data(tree.files)["instances"] if i["name"] == name)
    assert inst["swatches"] == [{"src": "index_files/swatches/_2_seat_sofa_0.png", "px": [80, 40], "width_m": 0.4}]
    assert tree.files["index_files/swatches/_2_seat_sofa_0.png"][:4] == b"\x89PNG"
    # the atlas's own scale (UV area over surface), not the density the swatch was sampled at (info)
    scene, instance = exports["inputs"]["scene"], exports["inputs"]["instances"][name]
    density = mean_density(scene, instance, (32, 32))
    assert inst["px_per_metre"] == pytest.approx(200 / 0.4) and inst["texels_per_metre"] == pytest.approx(density, abs=1e-3)
    assert mean_density(dataclasses.replace(scene, positions=scene.positions * 2), instance, (32, 32)) \
        == pytest.approx(density / 2)
    assert mean_density(scene, instance, (64, 64)) == pytest.approx(2 * density)
    rows = {key: value for _, value, key in inst["measures"]}
    assert rows["sw_to_reference"] == "0.0123" and rows["note"] == info["note"] and "projection" not in rows


def test_a_non_glb_asset_is_a_user_error(exports: dict) -> None:
    inputs = exports["inputs"]
    with pytest.raises(UserError, match="binary glTF"):
        RunPage().run(make_context("page"), scene=inputs["scene"], instances=inputs["instances"], pbr=inputs["pbr"],
                      asset=FileBlob(b"PK\x03\x04", ".zip"))


def test_focus_opens_where_the_atlas_has_data() -> None:
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[40:60, 32:56] = True
    x, y = focus(mask, 16)
    assert 28 <= x <= 44 and 36 <= y <= 48
    assert measures({"steps": 3, "init_scores": {"a": 0.5}}, {"baked_shading": False}) == [
        ["steps", "3", "steps"], ["init scores", "a: 0.5", "init_scores"], ["baked shading", "no", "baked_shading"]]


def test_report_script_cannot_close_the_page_script(tmp_path) -> None:
    report = RunReport([ReportEntry("n", None, "ran", note="</script><script>alert(1)</script>")])
    report.write_script(tmp_path / "report.js", {"nodes": {}})
    text = (tmp_path / "report.js").read_text()
    assert "</" not in text and text.startswith("window.GRAPHFLOW_RUN = ")
    assert json.loads(text[len("window.GRAPHFLOW_RUN = "):].rstrip().rstrip(";"))["nodes"][0]["note"].startswith("</script>")


def test_the_page_and_its_summary_carry_the_tile_seams_of_a_tiled_instance() -> None:
    """A photo crop laid as is on a floor (tile mode, 4 x 4 repeats): the page's instance and the node's
    summary (report.json's `outputs.page.summary`) carry issue 25's ratios, and the seams fail."""
    from helpers.photo_swatches import TUNING, floor_scene, reference_of
    from nodes.texture.project import ProjectionSettings, project_instance
    from nodes.types import PBRMaps

    scene, instances = floor_scene(1.5)
    reference = reference_of(TUNING[0], size=1.5 / 4, crop=64)
    texture = project_instance(scene, instances["floor"].face_mask, reference,
                               ProjectionSettings(texels_per_metre=256 / 1.5, max_size=256))
    ones = torch.ones(1, 256, 256)
    normal = torch.cat([torch.zeros(2, 256, 256), ones])
    pbr = PBRMaps(albedo=texture.image, roughness=ones, metallic=0 * ones, normal=normal, occlusion=ones,
                  mask=texture.mask, material="stone")
    tree = RunPage().run(make_context("page"), scene=scene, instances=instances, pbr=Keyed({"floor": pbr}),
                         asset=FileBlob(b"glTF" + bytes(16), ".glb"), references=Keyed({"floor": reference}),
                         texture=Keyed({"floor": texture}))
    seams = page_data(tree.files)["instances"][0]["tile_seams"]
    assert seams["measurable"] and seams["period_texels"] == [64, 64]
    assert {"a", "b", "c", "boundaries", "pass"} <= set(seams["x"]) and {"a", "b", "c", "pass"} <= set(seams["y"])
    assert not (seams["x"]["pass"] and seams["y"]["pass"])
    assert set(seams["swatch"]) == {"x", "y"}  # the reference is the swatch laid: its own ratios come along
    assert tree.summary["tile_seams"] == {"floor": seams}
    json.dumps(tree.summary, allow_nan=False)  # report.json stays strict JSON
    untextured = RunPage().run(make_context("page"), scene=scene, instances=instances, pbr=Keyed({"floor": pbr}),
                               asset=FileBlob(b"glTF" + bytes(16), ".glb"))
    assert page_data(untextured.files)["instances"][0]["tile_seams"] is None and untextured.summary["tile_seams"] == {}
