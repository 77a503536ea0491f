"""`repeat: vary` (issue 25 item 4): large surfaces covered by a quilted tile of K x K swatches, no visible
repetition at the swatch's period, structure and colour kept; `repeat: exact` stays the default."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.photo_swatches import TUNING, PhotoSwatch, bricks, reference_of
from PIL import Image

import nodes.catalog  # noqa: F401 - registers the nodes
from graphflow import Keyed, UserError, registry
from graphflow.testing import make_context
from nodes.swatch.nodes import material_from_reference
from nodes.swatch.tileable import TileSettings
from nodes.swatch.vary import VarySettings, period_autocorrelation, vary_maps, vary_measures
from nodes.types import Instance, SwatchMaterial

ROOT = Path(__file__).resolve().parents[2]
FLOOR = Keyed({"floor": Instance(name="floor", face_mask=torch.zeros(2, dtype=torch.bool), bbox=torch.zeros(2, 3),
                                 material="stone")})
BRICKS, STONE = TUNING[0], TUNING[1]
SMALL = VarySettings(periods=3)  # a 3 x 3 quilt keeps the tests fast; the node's default is 4


def bind(tmp: Path, entry: str) -> object:
    Image.new("RGB", (24, 24), (120, 80, 60)).save(tmp / "swatch.png")
    (tmp / "refs.yaml").write_text(f"instances:\n  floor: {{images: swatch.png, {entry}}}\n")
    return registry.get("refs.bind")({}).run(make_context(), instances=FLOOR, file=tmp / "refs.yaml",
                                              references=None)["floor"]


def test_repeat_is_parsed_and_exact_is_the_default(tmp_path: Path) -> None:
    assert bind(tmp_path, "size: 0.5").repeat == "exact"
    assert bind(tmp_path, "repeat: vary").repeat == "vary"


@pytest.mark.parametrize("entry, needle", [
    ("repeat: sometimes", "repeat must be one of exact, vary, not 'sometimes'"),
    ("repeat: 3", "repeat must be one of exact, vary, not 3"),
    ("repeat: vary, mode: fit", "repeat: vary needs mode: tile"),
])
def test_bad_repeat_is_a_user_error_naming_entry_and_key(tmp_path: Path, entry: str, needle: str) -> None:
    with pytest.raises(UserError) as err:
        bind(tmp_path, entry)
    assert "entry 'floor'" in str(err.value) and needle in str(err.value)


FLOOR_OBJ = "o floor\nv -2 0 -2\nv 2 0 -2\nv 2 0 2\nv -2 0 2\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf 1/1 4/4 3/3 2/2\n"


def run_preview(tmp: Path, entry: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """graphs/preview_projection.yaml (the shortest shipped graph with swatch.material) through the real CLI
    on a 4 m floor bound to the bricks photo."""
    (tmp / "floor.obj").write_text(FLOOR_OBJ)
    Image.fromarray((BRICKS.image(96).clamp(0, 1) ** (1 / 2.2) * 255).round().byte().permute(1, 2, 0).numpy()
                    ).save(tmp / "bricks.png")
    (tmp / "refs.yaml").write_text(f"instances:\n  floor: {{images: bricks.png, material: stone, {entry}}}\n")
    env = {k: v for k, v in os.environ.items() if k != "GRAPHFLOW_PLUGINS"}
    return subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(ROOT / "graphs" / "preview_projection.yaml"),
                           "--input", f"scene={tmp / 'floor.obj'}", "--input", f"references={tmp / 'refs.yaml'}",
                           "--out", str(tmp / "out"), "--cache", str(tmp / "cache"), "-q"],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_cli_exits_2_on_a_bad_repeat_naming_entry_and_key(tmp_path: Path) -> None:
    res = run_preview(tmp_path, "repeat: random", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "entry 'floor'" in res.stderr and "repeat must be one of exact, vary" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def swatches() -> dict[str, torch.Tensor]:
    """The bricks photo as the pipeline makes it (de-lit, tileable: 121 x 107 texels, not a whole number of
    courses) and the stone photo made tileable (the tiling alone, fast)."""
    return {"bricks": material_from_reference(reference_of(BRICKS, crop=128), TileSettings()).albedo,
            "stone": material_from_reference(reference_of(STONE, crop=96), TileSettings(), fit="none").albedo}


@pytest.mark.parametrize("name", ["bricks", "stone"])
def test_vary_breaks_the_repeat_and_keeps_structure_and_colour(swatches: dict[str, torch.Tensor], name: str) -> None:
    swatch = swatches[name]
    h, w = swatch.shape[-2:]
    varied, info = vary_maps(swatch, SMALL, seed=0)
    assert varied.shape == (3, 3 * h, 3 * w) and info["periods"] == 3
    exact = vary_measures(swatch, swatch.repeat(1, 3, 3))
    measured = vary_measures(swatch, varied)
    assert exact["autocorrelation"] > 0.99  # the exact repeat correlates fully at its period
    assert measured["autocorrelation"] <= 0.6, measured
    assert measured["structure"] <= measured["structure_bound"], measured
    assert measured["delta_e"] <= 8, measured


def wrap_steps(image: torch.Tensor) -> tuple[float, float]:
    """The mean step across the left/right (top/bottom) wrap over the largest step between inner lines."""
    inner_x = (image[:, :, 1:] - image[:, :, :-1]).abs().mean((0, 1)).max()
    inner_y = (image[:, 1:] - image[:, :-1]).abs().mean((0, 2)).max()
    return (float((image[:, :, 0] - image[:, :, -1]).abs().mean() / inner_x),
            float((image[:, 0] - image[:, -1]).abs().mean() / inner_y))


def test_vary_tiles_at_its_own_period(swatches: dict[str, torch.Tensor]) -> None:
    """On the stone (no straight joints whose steps hide a seam): the wrap is a cut like the inner ones,
    no larger a step than the largest inner step; the same texture cropped (not periodic) has 2 x that."""
    varied, _ = vary_maps(swatches["stone"], SMALL, seed=0)
    assert max(wrap_steps(varied)) < 1
    assert min(wrap_steps(varied[:, :-13, :-13])) > 1.2


def test_on_a_whole_number_of_courses_vary_is_as_uncorrelated_as_the_wall_itself() -> None:
    """The limit of the 0.6 bound: a brick swatch trimmed to exactly two courses (80 x 80 texels) repeats its
    brick lattice at the swatch's period, and so does the non-repeating wall it was photographed from (0.89
    there). Keeping the lattice (structure), vary can only come down to the wall's own correlation."""
    swatch = material_from_reference(reference_of(BRICKS, crop=96), TileSettings(), fit="none").albedo
    h, w = swatch.shape[-2:]
    rng = np.random.default_rng(BRICKS.seed)
    size = 2 * 96 + 96 // 2  # as PhotoSwatch.image draws it: the same wall, texel for texel
    wall = torch.from_numpy(bricks(rng, size, rows=int(rng.integers(9, 13)))).permute(2, 0, 1).float()
    wall_ac = max(period_autocorrelation(wall, (h, w)))
    varied, _ = vary_maps(swatch, SMALL, seed=0)
    measured = vary_measures(swatch, varied)
    assert wall_ac > 0.8  # the lattice alone correlates at this lag
    assert measured["autocorrelation"] <= wall_ac + 0.05, (measured, wall_ac)
    assert measured["structure"] <= measured["structure_bound"], measured


def test_vary_copies_swatch_texels_and_is_deterministic(swatches: dict[str, torch.Tensor]) -> None:
    swatch = swatches["bricks"]
    first, _ = vary_maps(swatch, SMALL, seed=5)
    again, _ = vary_maps(swatch, SMALL, seed=5)
    other, _ = vary_maps(swatch, SMALL, seed=6)
    assert torch.equal(first, again) and not torch.equal(first, other)
    colours = set(map(tuple, swatch.reshape(3, -1).T.tolist()))
    assert set(map(tuple, first.reshape(3, -1).T.tolist())) <= colours  # cut, never blended: no new colour


def test_material_node_threads_repeat_and_keeps_maps_aligned() -> None:
    photo = PhotoSwatch("stone", "stone", 3)
    exact = material_from_reference(reference_of(photo, crop=64), TileSettings(), work_size=48)
    varied = material_from_reference(reference_of(photo, crop=64, repeat="vary"), TileSettings(), work_size=48,
                                     vary=SMALL, seed=1)
    assert isinstance(varied, SwatchMaterial) and varied.repeat == "vary" and exact.repeat == "exact"
    assert varied.size == pytest.approx(3 * exact.size)  # same metres per texel, three swatches wide
    assert varied.albedo.shape[-2:] == tuple(3 * s for s in exact.albedo.shape[-2:])
    assert exact.height is not None and varied.height is not None
    assert varied.height.shape[-2:] == varied.albedo.shape[-2:] and abs(float(varied.height.mean())) < 1e-6


def test_every_map_takes_the_same_offsets_and_cuts(swatches: dict[str, torch.Tensor]) -> None:
    """A second map that is a function of the albedo (as a height is, texel for texel) stays that function."""
    swatch = swatches["stone"]
    height = swatch[:1] * 2 - swatch[2:3]
    varied, _ = vary_maps(torch.cat([swatch, height]), SMALL, seed=2)
    assert torch.equal(varied[3:], varied[:1] * 2 - varied[2:3])
    alone, _ = vary_maps(swatch, SMALL, seed=2)
    assert torch.equal(alone, varied[:3])  # the costs read the albedo only


@pytest.mark.slow
def test_vary_floor_through_the_preview_graph_validates(tmp_path: Path) -> None:
    res = run_preview(tmp_path, "size: 0.5, repeat: vary")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {n["node"] for n in report["nodes"]} >= {"material", "project", "export"}
    from nodes.export.validator import validate_glb, validator_available

    if validator_available():
        assert validate_glb(tmp_path / "out" / "asset.glb")["issues"]["numErrors"] == 0
