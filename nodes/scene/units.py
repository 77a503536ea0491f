"""The length unit of a scene file: what its coordinates are, in metres (issue 23).

glTF's unit is the metre by specification; OBJ has none (read as metres, as
most exporters write it). Files from CAD and architecture tools are often in
millimetres or centimetres all the same, and a texturing graph lays swatches
at their real size, so the unit decides how large every pattern is and how many
texels every atlas gets (a room read 1000 times too large asks for atlases a
million times too large).

`io.load_scene`'s `units` param says it: `m`, `cm`, `mm`, `in`, `ft`, or
`auto` (the default). `auto` keeps the file's own unit (metres) unless the
scene read that way is implausible for an indoor scene, judged from two
sizes: the largest side of the scene's bounding box and the median over parts
of each part's largest side (furniture, walls):
- plausible in metres: the scene is at most `MAX_SCENE_M` (50 m: a large
  hall) across and its median part at most `MAX_PART_M` (10 m: a long wall).
  A scene smaller than anything indoors stays in metres too: no unit makes a
  file's numbers larger than metres do; the cost check then says that its
  atlases are clamped to `min_size` and what to set;
- otherwise centimetres or millimetres, whichever puts the scene's size and
  its median part nearest (in log scale, summed) to a typical room
  (`TYPICAL_SCENE_M`, 3 m) and a typical piece of furniture
  (`TYPICAL_PART_M`, 0.8 m). Inches and feet are never guessed: their sizes
  lie within a factor of 3 of centimetres and decimetres, closer than a size
  can tell apart; name them with `units: in` or `units: ft`.
A guess is logged as one warning line that says what was read, what was
chosen and how to override it; the choice is in `Scene.units` and in the
load node's note in report.json either way.

Why `auto` and not `m` by default: a user with a millimetre export gets the
right size without knowing the param, and a metre file (the spec's unit) is
never changed when it is plausible, so the default costs metre users nothing.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Units = Literal["auto", "m", "cm", "mm", "in", "ft"]
METRES_PER_UNIT: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
UNIT_NAMES = {"m": "metres", "cm": "centimetres", "mm": "millimetres", "in": "inches", "ft": "feet"}
MAX_SCENE_M = 50.0
MAX_PART_M = 10.0
TYPICAL_SCENE_M = 3.0
TYPICAL_PART_M = 0.8
GUESSED = ("cm", "mm")


@dataclass(frozen=True)
class UnitChoice:
    """The unit a scene was read in and why."""

    unit: str  # a key of METRES_PER_UNIT
    metres_per_unit: float
    guessed: bool  # `auto` chose another unit than the file's own
    reason: str  # one line: what was measured and chosen

    def note(self) -> str:
        return f"units: {self.unit} ({self.reason})"


def scene_sizes(part_positions: Sequence[np.ndarray]) -> tuple[float, float]:
    """(largest side of the scene's bounding box, median over parts of each part's largest side), in file units."""
    parts = [p for p in part_positions if len(p)]
    if not parts:
        return 0.0, 0.0
    sides = [float(np.ptp(p.astype(np.float64), axis=0).max()) for p in parts]
    everything = np.concatenate([np.stack([p.min(axis=0), p.max(axis=0)]) for p in parts]).astype(np.float64)
    return float(np.ptp(everything, axis=0).max()), float(np.median(sides))


def _metres(value: float) -> str:
    if value >= 1.0:
        return f"{value:.3g} m"
    if value >= 0.01:
        return f"{value * 100:.3g} cm"
    return f"{value * 1000:.3g} mm"


def _distance(scene: float, part: float, factor: float) -> float:
    """How far a reading (`factor` metres per unit) puts the scene from a typical room and piece of furniture."""
    def log_gap(value: float, typical: float) -> float:
        return abs(math.log10(max(value * factor, 1e-12) / typical))
    return log_gap(scene, TYPICAL_SCENE_M) + log_gap(part, TYPICAL_PART_M)


def choose_units(units: Units, part_positions: Sequence[np.ndarray], file_unit: str = "m") -> UnitChoice:
    """The unit to read a scene in: `units` when given, else `auto`'s judgement (module docstring)."""
    if units != "auto":
        return UnitChoice(units, METRES_PER_UNIT[units], False, "as set by the units param")
    scene, part = scene_sizes(part_positions)
    own = METRES_PER_UNIT[file_unit]
    read = f"read as {UNIT_NAMES[file_unit]} the scene is {_metres(scene * own)} across, its median part " \
           f"{_metres(part * own)}"
    if scene * own <= MAX_SCENE_M and part * own <= MAX_PART_M:
        return UnitChoice(file_unit, own, False, f"auto: the file's unit; {read}")
    best = min(GUESSED, key=lambda u: _distance(scene, part, METRES_PER_UNIT[u]))
    factor = METRES_PER_UNIT[best]
    reason = (f"auto: {read}, implausible indoors (over {MAX_SCENE_M:g} m, or parts over {MAX_PART_M:g} m); "
              f"read as {UNIT_NAMES[best]}: {_metres(scene * factor)} across, median part "
              f"{_metres(part * factor)}")
    return UnitChoice(best, factor, True, reason)


def override_hint(choice: UnitChoice) -> str:
    """What to set when the choice is wrong."""
    return f"set scene.params.units (m|cm|mm|in|ft) if the file is not in {UNIT_NAMES[choice.unit]}"
