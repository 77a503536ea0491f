"""refs.bind's `lights:` (issue 21 item 2): several photos under known lights, and its load-time errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import nodes.catalog  # noqa: F401
from graphflow import Keyed, UserError, registry
from graphflow.fingerprint import fingerprint
from graphflow.testing import make_context
from nodes.types import Instance, Reference

WALL = Keyed({"wall": Instance(name="wall", face_mask=torch.zeros(4, dtype=torch.bool), bbox=torch.zeros(2, 3),
                               material="stone")})


def bind(tmp: Path, lights: str, sizes: tuple[tuple[int, int], ...] = ((32, 24),) * 4) -> Reference:
    names = []
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (100 + 10 * i, 80, 60)).save(tmp / f"lit{i}.png")
        names.append(f"lit{i}.png")
    (tmp / "refs.yaml").write_text(f"instances:\n  wall: {{images: [{', '.join(names)}], lights: {lights}}}\n")
    node = registry.get("refs.bind")({})
    return node.run(make_context(), instances=WALL, file=tmp / "refs.yaml", references=None)["wall"]


def test_lights_azimuths_and_pairs_are_kept_in_order(tmp_path: Path) -> None:
    ref = bind(tmp_path, "[0, [90, 30], 180, [270.5, 45]]")
    assert ref.lights == ((0.0, None), (90.0, 30.0), (180.0, None), (270.5, 45.0))
    assert len(ref.images) == 4
    other = bind(tmp_path, "[0, [90, 35], 180, [270.5, 45]]")
    assert fingerprint(ref) != fingerprint(other)  # the lights are part of the reference's digest


@pytest.mark.parametrize("lights, sizes, needle", [
    ("[0, 90, 180]", ((32, 24),) * 4, "lights lists 3 light(s) for 4 image(s)"),
    ("[0, 90]", ((32, 24),) * 2, "at least 3"),
    ("[0, east, 180, 270]", ((32, 24),) * 4, "lights[1] must be an azimuth in degrees"),
    ("[0, [90, 120], 180, 270]", ((32, 24),) * 4, "lights[1]: the elevation"),
    ("[0, 90, 180, 270]", ((32, 24), (32, 24), (40, 24), (32, 24)), "pixel-aligned photos of one size"),
    ("90", ((32, 24),) * 4, "lights must be a list"),
])
def test_bad_lights_are_user_errors_naming_entry_and_key(tmp_path: Path, lights: str, sizes: tuple,
                                                        needle: str) -> None:
    with pytest.raises(UserError) as err:
        bind(tmp_path, lights, sizes)
    text = str(err.value)
    assert "entry 'wall'" in text and "lights" in text and needle in text
